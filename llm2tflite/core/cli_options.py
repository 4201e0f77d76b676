"""Options the stages' command lines share: how a rule passes a JSON value or the prompts."""

from __future__ import annotations

import json

PROMPTS_HELP = "JSON list of prompts, e.g. '[\"Estoy disfrutando de\"]'"


def add_json_option(parser, flag: str, dest: str, help: str, required: bool = True, **kwargs):
    """``flag`` takes one JSON value (the rules pass config sections as JSON)."""
    parser.add_argument(flag, required=required, type=json.loads, dest=dest, help=help, **kwargs)


def add_prompts_option(parser) -> None:
    add_json_option(parser, "--prompts-json", "prompts", PROMPTS_HELP)
