"""Chat templates from Hugging Face checkpoints' Jinja sources (llm2tflite/core/chat.py
``from_jinja``): real templates, written here as their tokenizer_config.json files carry them.

- Gemma 3's, Llama 3's, plain ChatML's, and SmolLM2's and Qwen 2.5's (ChatML after a default
  system prompt, which becomes the preamble) give the prefixes, suffixes and preamble written
  here by hand, and the derived template renders multi-turn conversations exactly as the Jinja
  source does (rendered here by jinja2 as transformers renders chat templates; the leading bos
  is left out, the runtime puts the start token first);
- a template that changes the content, Llama 3's first one (a generation prompt whatever
  ``add_generation_prompt`` says), one whose first turn's prefix does not end with later
  turns' prefix, broken Jinja: refused in one line;
- a checkpoint directory's tokenizer_config.json is read (special tokens as strings or objects).
"""

from __future__ import annotations

import json

import pytest

from llm2tflite.core.chat import ChatTemplate, ChatTemplateError, from_jinja, from_tokenizer_config

# google/gemma-3-*-it tokenizer_config.json.
GEMMA3_JINJA = """{{ bos_token }}
{%- if messages[0]['role'] == 'system' -%}
    {%- if messages[0]['content'] is string -%}
        {%- set first_user_prefix = messages[0]['content'] + '\\n\\n' -%}
    {%- else -%}
        {%- set first_user_prefix = messages[0]['content'][0]['text'] + '\\n\\n' -%}
    {%- endif -%}
    {%- set loop_messages = messages[1:] -%}
{%- else -%}
    {%- set first_user_prefix = "" -%}
    {%- set loop_messages = messages -%}
{%- endif -%}
{%- for message in loop_messages -%}
    {%- if (message['role'] == 'user') != (loop.index0 % 2 == 0) -%}
        {{ raise_exception("Conversation roles must alternate user/assistant/user/assistant/...") }}
    {%- endif -%}
    {%- if (message['role'] == 'assistant') -%}
        {%- set role = "model" -%}
    {%- else -%}
        {%- set role = message['role'] -%}
    {%- endif -%}
    {{ '<start_of_turn>' + role + '\\n' + (first_user_prefix if loop.first else "") }}
    {%- if message['content'] is string -%}
        {{ message['content'] | trim }}
    {%- elif message['content'] is iterable -%}
        {%- for item in message['content'] -%}
            {%- if item['type'] == 'image' -%}
                {{ '<start_of_image>' }}
            {%- elif item['type'] == 'text' -%}
                {{ item['text'] | trim }}
            {%- endif -%}
        {%- endfor -%}
    {%- else -%}
        {{ raise_exception("Invalid content type") }}
    {%- endif -%}
    {{ '<end_of_turn>\\n' }}
{%- endfor -%}
{%- if add_generation_prompt -%}
    {{'<start_of_turn>model\\n'}}
{%- endif -%}
"""
# meta-llama/Meta-Llama-3-8B-Instruct, as revised to honour add_generation_prompt.
LLAMA3_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)
# Its first release: the generation prompt is always written.
LLAMA3_FIRST_JINJA = (
    "{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = "
    "'<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'+ message['content'] | "
    "trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}"
    "{% endif %}{{ content }}{% endfor %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
)
# Plain ChatML (e.g. teknium/OpenHermes-2.5-Mistral-7B).
CHATML_JINJA = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# HuggingFaceTB/SmolLM2-*-Instruct: ChatML with a default system prompt.
SMOLLM2_JINJA = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
# Qwen/Qwen2.5-*-Instruct: ChatML with a default system prompt, and tools.
QWEN25_JINJA = """{%- if tools %}
    {{- '<|im_start|>system\\n' }}
    {%- if messages[0]['role'] == 'system' %}
        {{- messages[0]['content'] }}
    {%- else %}
        {{- 'You are Qwen, created by Alibaba Cloud. You are a helpful assistant.' }}
    {%- endif %}
    {{- "\\n\\n# Tools\\n\\nYou may call one or more functions to assist with the user query.\\n\\nYou are provided with function signatures within <tools></tools> XML tags:\\n<tools>" }}
    {%- for tool in tools %}
        {{- "\\n" }}
        {{- tool | tojson }}
    {%- endfor %}
    {{- "\\n</tools>\\n\\nFor each function call, return a json object with function name and arguments within <tool_call></tool_call> XML tags:\\n<tool_call>\\n{\\"name\\": <function-name>, \\"arguments\\": <args-json-object>}\\n</tool_call><|im_end|>\\n" }}
{%- else %}
    {%- if messages[0]['role'] == 'system' %}
        {{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}
    {%- else %}
        {{- '<|im_start|>system\\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\\n' }}
    {%- endif %}
{%- endif %}
{%- for message in messages %}
    {%- if (message.role == "user") or (message.role == "system" and not loop.first) or (message.role == "assistant" and not message.tool_calls) %}
        {{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}
    {%- elif message.role == "assistant" %}
        {{- '<|im_start|>' + message.role }}
        {%- if message.content %}
            {{- '\\n' + message.content }}
        {%- endif %}
        {%- for tool_call in message.tool_calls %}
            {%- if tool_call.function is defined %}
                {%- set tool_call = tool_call.function %}
            {%- endif %}
            {{- '\\n<tool_call>\\n{"name": "' }}
            {{- tool_call.name }}
            {{- '", "arguments": ' }}
            {{- tool_call.arguments | tojson }}
            {{- '}\\n</tool_call>' }}
        {%- endfor %}
        {{- '<|im_end|>\\n' }}
    {%- elif message.role == "tool" %}
        {%- if (loop.index0 == 0) or (messages[loop.index0 - 1].role != "tool") %}
            {{- '<|im_start|>user' }}
        {%- endif %}
        {{- '\\n<tool_response>\\n' }}
        {{- message.content }}
        {{- '\\n</tool_response>' }}
        {%- if loop.last or (messages[loop.index0 + 1].role != "tool") %}
            {{- '<|im_end|>\\n' }}
        {%- endif %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|im_start|>assistant\\n' }}
{%- endif %}
"""  # noqa: E501  (as the file carries it)

CHATML_FIELDS = {
    "user": {"prefix": "<|im_start|>user\n", "suffix": "<|im_end|>\n"},
    "model": {"prefix": "<|im_start|>assistant\n", "suffix": "<|im_end|>\n"},
}

# name -> (Jinja source, bos, eos, the prefixes and suffixes, written by hand, end of turn)
EXPRESSIBLE = {
    "gemma3": (
        GEMMA3_JINJA,
        "<bos>",
        "<eos>",
        {
            "user": {"prefix": "<start_of_turn>user\n", "suffix": "<end_of_turn>\n"},
            "model": {"prefix": "<start_of_turn>model\n", "suffix": "<end_of_turn>\n"},
            "trim": True,
        },
        "<end_of_turn>",
    ),
    "llama3": (
        LLAMA3_JINJA,
        "<|begin_of_text|>",
        "<|eot_id|>",
        {
            "user": {
                "prefix": "<|start_header_id|>user<|end_header_id|>\n\n",
                "suffix": "<|eot_id|>",
            },
            "model": {
                "prefix": "<|start_header_id|>assistant<|end_header_id|>\n\n",
                "suffix": "<|eot_id|>",
            },
            "trim": True,
        },
        "<|eot_id|>",
    ),
    "chatml": (CHATML_JINJA, "<s>", "<|im_end|>", CHATML_FIELDS, "<|im_end|>"),
    "smollm2": (
        SMOLLM2_JINJA,
        "<|im_start|>",
        "<|im_end|>",
        {
            **CHATML_FIELDS,
            "preamble": "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, "
            "trained by Hugging Face<|im_end|>\n",
        },
        "<|im_end|>",
    ),
    "qwen2.5": (
        QWEN25_JINJA,
        "",
        "<|im_end|>",
        {
            **CHATML_FIELDS,
            "preamble": "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a "
            "helpful assistant.<|im_end|>\n",
        },
        "<|im_end|>",
    ),
}

CONVERSATION = [
    "Hola, ¿qué tal?",
    "Bien, gracias.\nY tú?",
    "  Cuéntame {{ algo }} 'raro' 🤖  ",
    "Vale: {% nada %}",
    "\tÚltima pregunta\n",
    "Adiós",
]


def _render_as_transformers(source, messages, add_generation_prompt, bos, eos):
    """transformers' apply_chat_template rendering (its Jinja environment's settings)."""
    import jinja2
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    environment = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=["jinja2.ext.loopcontrols"]
    )
    environment.globals["raise_exception"] = raise_exception
    return environment.from_string(source).render(
        messages=messages, add_generation_prompt=add_generation_prompt, bos_token=bos,
        eos_token=eos,
    )  # fmt: skip


@pytest.mark.parametrize("name", sorted(EXPRESSIBLE))
def test_derived_template_renders_conversations_as_the_jinja_source(name):
    source, bos, eos, expected, end_of_turn = EXPRESSIBLE[name]
    template = from_jinja(source, eos)
    assert template.to_dict() == expected
    assert template.end_of_turn == end_of_turn
    for length in range(1, len(CONVERSATION) + 1):
        ours_messages = [
            {"role": ("user", "model")[i % 2], "content": text}
            for i, text in enumerate(CONVERSATION[:length])
        ]
        hf_messages = [
            {"role": ("user", "assistant")[i % 2], "content": text}
            for i, text in enumerate(CONVERSATION[:length])
        ]
        prompted = length % 2 == 1  # a user turn last: the generation prompt follows
        theirs = _render_as_transformers(source, hf_messages, prompted, bos, eos)
        if name in ("gemma3", "llama3"):
            assert theirs.startswith(bos)
            theirs = theirs[len(bos) :]  # the runtime's start token
        assert template.render(ours_messages, prompted) == theirs, length
    # A turn as chat prefills it: stripped by a template that strips content.
    turn = template.turn("  hola \n")
    assert ("  hola \n" in turn) != template.trim


def test_derived_gemma3_template_is_the_family_template_with_trim():
    from llm2tflite.families.registry import by_name

    derived = from_jinja(GEMMA3_JINJA, "<eos>")
    assert {**by_name("gemma3").chat_template, "trim": True} == derived.to_dict()


REFUSED = {
    "start token later": (
        CHATML_JINJA.replace("'<|im_start|>' +", "bos_token + '<|im_start|>' +"),
        r"it writes the start token \(bos_token\) after the start",
    ),
    "first prefix differs": (
        CHATML_JINJA.replace(
            "'<|im_start|>' +", "('<|first|>' if loop.first else '<|im_start|>') +"
        ),
        r"the text before the first user turn, '<\|first\|>user\\n', does not end with",
    ),
    "llama3 first release": (LLAMA3_FIRST_JINJA, r"a later turn changes the turns before it"),
    "content changed": (
        CHATML_JINJA.replace("message['content']", "message['content'] | upper"),
        r"a message's content does not appear in its rendering as it was given",
    ),
    "whitespace changed": (
        CHATML_JINJA.replace("message['content']", "message['content'] | replace(' ', '_')"),
        r"surrounding whitespace is changed other than by stripping it",
    ),
    "roles told apart later": (
        CHATML_JINJA.replace("message['content'] +", "message['content'] + loop.index|string +"),
        r"a message's content does not appear|rendering a \d-message conversation gives",
    ),
    "raises": (
        "{{ raise_exception('System role not supported') }}",
        r"fails on a 1-message conversation: System role not supported",
    ),
    "not jinja": ("{% for message in messages %}", r"the chat template is not valid Jinja: "),
}


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_inexpressible_template_is_refused_in_one_line(name):
    source, message = REFUSED[name]
    with pytest.raises(ChatTemplateError, match=message) as raised:
        from_jinja(source, "</s>")
    assert "\n" not in str(raised.value)


def test_tokenizer_config_of_a_checkpoint(tmp_path):
    assert from_tokenizer_config(tmp_path) is None  # no tokenizer_config.json
    config = tmp_path / "tokenizer_config.json"
    config.write_text(json.dumps({"bos_token": {"content": "<bos>", "special": True}}))
    assert from_tokenizer_config(tmp_path) is None  # no chat_template
    config.write_text(
        json.dumps(
            {"bos_token": {"content": "<bos>"}, "eos_token": "<eos>", "chat_template": GEMMA3_JINJA}
        )
    )
    assert from_tokenizer_config(tmp_path) == from_jinja(GEMMA3_JINJA, "<eos>")
    # Named templates: the default one.
    config.write_text(
        json.dumps({"chat_template": [{"name": "default", "template": CHATML_JINJA}]})
    )
    assert from_tokenizer_config(tmp_path).user_prefix == "<|im_start|>user\n"
    config.write_text(json.dumps({"chat_template": QWEN25_JINJA}))
    assert from_tokenizer_config(tmp_path).preamble.startswith("<|im_start|>system\nYou are Qwen")
    config.write_text(json.dumps({"chat_template": REFUSED["llama3 first release"][0]}))
    with pytest.raises(ChatTemplateError, match=r"tokenizer_config\.json: the chat template "):
        from_tokenizer_config(tmp_path)


def test_trim_travels_in_the_dict_and_the_jinja_form():
    import jinja2

    fields = dict(EXPRESSIBLE["gemma3"][3])
    template = ChatTemplate.from_dict(fields)
    assert template.trim and template.to_dict() == fields
    assert not ChatTemplate.from_dict({k: fields[k] for k in ("user", "model")}).trim
    with pytest.raises(ValueError, match="trim: true or false"):
        ChatTemplate.from_dict({**fields, "trim": "yes"})
    messages = [{"role": "user", "content": " hola\n"}, {"role": "model", "content": "\tsí "}]
    as_parts = [{**m, "content": [{"type": "text", "text": m["content"]}]} for m in messages]
    expected = (
        "<start_of_turn>user\nhola<end_of_turn>\n<start_of_turn>model\nsí<end_of_turn>\n"
        "<start_of_turn>model\n"
    )
    assert template.render(messages) == expected
    compiled = jinja2.Environment().from_string(template.jinja())
    for given in (messages, as_parts):
        assert compiled.render(messages=given, add_generation_prompt=True) == expected
