"""The option schema is the only declaration of an option: every surface derives from it.

A made-up option is added to the schema in a fresh interpreter, and the runtime CLI, the
protocol, the option classes and the server take it without another edit; then the real options
are walked through each surface."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from model_runtime import option_schema, protocol
from model_runtime.__main__ import build_parser
from model_runtime.errors import UserError
from model_runtime.option_schema import CAPTURE, EXPORT, OPTIONS, RECONSTRUCT

REPO = Path(__file__).resolve().parents[1]

ADDED_OPTION = textwrap.dedent('''
    import dataclasses, json, sys
    from model_runtime import option_schema as schema
    schema.OPTIONS += (schema.Option("sharpness", schema.CAPTURE, schema.CHOICE, "soft", "how sharp the maps are",
                                     choices=("soft", "hard")),)
    schema.BY_NAME["sharpness"] = schema.OPTIONS[-1]
    from model_runtime import protocol
    from model_runtime.__main__ import build_parser
    from model_runtime.capture import CaptureOptions
    parser = build_parser()
    args = parser.parse_args(["capture", "in.mp4", "-o", "out", "--sharpness", "hard"])
    capture_help = parser._subparsers._group_actions[0].choices["capture"].format_help()
    request = protocol.parse_request(protocol.request("capture", "a", input="in.mp4", output="out", sharpness="hard"))
    try:
        protocol.parse_request(protocol.encode({"type": "capture", "id": "b", "input": "i", "output": "o",
                                                "sharpness": "blurry"}))
        refused = None
    except protocol.ProtocolError as exc:
        refused = str(exc)
    print(json.dumps({
        "cli": args.sharpness, "help": "how sharp the maps are" in capture_help,
        "fields": "sharpness" in protocol.REQUEST_FIELDS["capture_reconstruct"][1],
        "request": request["sharpness"], "refused": refused,
        "options": dataclasses.asdict(CaptureOptions(sharpness="hard"))["sharpness"],
        "default": CaptureOptions().sharpness,
        "hashed": schema.settings_key({"sharpness": "hard"}) != schema.settings_key({"sharpness": "soft"}),
    }))
''')


def test_an_option_added_to_the_schema_reaches_every_runtime_surface():
    done = subprocess.run([sys.executable, "-c", ADDED_OPTION], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"cli": "hard", "help": True, "fields": True, "request": "hard",
                    "refused": "sharpness: must be one of soft, hard; got 'blurry'", "options": "hard",
                    "default": "soft", "hashed": True}


def subcommand_help(name: str) -> str:
    return build_parser()._subparsers._group_actions[0].choices[name].format_help()


@pytest.mark.parametrize("option", OPTIONS, ids=[option.name for option in OPTIONS])
def test_every_option_has_help_and_appears_in_the_cli_and_the_protocol(option):
    assert option.help and len(option.help) > 20
    commands = {CAPTURE: ("capture",), RECONSTRUCT: ("capture", "reconstruct"), EXPORT: ("export",)}[option.stage]
    flag = option.flag.removesuffix("s") if option.kind == option_schema.MAPPING else option.flag
    first_words = " ".join(option.help.split()[:3])
    for command in commands:
        text = " ".join(subcommand_help(command).split())
        assert flag in text and first_words in text, (command, option.name)
    jobs = [kind for kind, stages in protocol.JOB_STAGES.items() if option.stage in stages]
    assert jobs and all(option.name in protocol.REQUEST_FIELDS[kind][1] for kind in jobs)


def test_values_are_checked_once_with_the_same_message_everywhere():
    with pytest.raises(UserError) as from_cli:
        option_schema.validate({"focal": "35 inches"})
    with pytest.raises(protocol.ProtocolError) as from_request:
        protocol.parse_request(protocol.encode({"type": "capture", "id": 1, "input": "a", "output": "b",
                                                "focal": "35 inches"}))
    assert from_cli.value.message == str(from_request.value) == "focal: cannot read the focal length '35 inches'"
    assert from_cli.value.hint == from_request.value.hint and "35mm/23.5" in from_cli.value.hint


def test_flags_default_on_can_be_turned_off_on_the_command_line():
    args = build_parser().parse_args(["capture", "in.mp4", "-o", "out", "--no-appearance", "--still-images"])
    assert option_schema.values_from_arguments(args, CAPTURE) == {"appearance": False, "still_images": True}


def test_the_settings_key_covers_every_setting_of_the_maps_and_nothing_else():
    values = option_schema.validate({}, (CAPTURE,))
    before = option_schema.settings_key(values)
    assert option_schema.settings_key({**values, "overwrite": True}) == before  # not a setting of the maps
    assert option_schema.settings_key({**values, "appearance": False}) != before
