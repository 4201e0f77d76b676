# Settings and helpers of the demo pages' rules (workflow/rules/web.smk): which models get a
# page, the LiteRT variant it runs, where `npm ci` installs the JavaScript packages. The config
# check (llm2tflite/config_check.py) has already refused unknown models and variants the LiteRT
# route does not build.
from llm2tflite.config_check import web_models
from llm2tflite.web.node_env import MARKER as WEB_NODE_ENV_MARKER
from llm2tflite.web.page import RUNTIME_DIR_NAME as WEB_RUNTIME_DIR_NAME
from llm2tflite.web.page import STATIC_FILES as WEB_STATIC_FILES
from llm2tflite.web.vendor import VERSIONS_FILE as WEB_VERSIONS_FILE

WEB = config["web"]
WEB_VARIANT = WEB["variant"]
WEB_THREADS = WEB["threads"]
WEB_NODE_ENV = WEB["node_env"]
# Default every model when the LiteRT route is on, none when it is off.
WEB_MODELS = web_models(config)


def web_targets():
    """Every configured model's page and the runtime they share."""
    if not WEB_MODELS:
        return []
    return [report_path(f"web/{WEB_RUNTIME_DIR_NAME}")] + [
        report_path(f"web/{model}") for model in WEB_MODELS
    ]


def web_versions_file():
    """The vendored packages' versions, for the manifest (none without pages)."""
    if not WEB_MODELS:
        return []
    return [report_path(f"web/{WEB_RUNTIME_DIR_NAME}/{WEB_VERSIONS_FILE}")]
