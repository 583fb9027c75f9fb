"""Blender's surfaces of the option schema: the panel's properties, the panel itself, the
headless CLI and the request all take an option added to the schema without another edit."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import bpy
from conftest import REPO, RecordingLayout

ADDED_OPTION = textwrap.dedent('''
    import json, os, sys, tempfile
    import bpy
    from types import SimpleNamespace
    from faceanything_blender.runtime_paths import runtime_module
    schema = runtime_module("option_schema")
    schema.OPTIONS += (schema.Option("sharpness", schema.RECONSTRUCT, schema.CHOICE, "soft", "how sharp the mesh is",
                                     choices=("soft", "hard")),)
    schema.BY_NAME["sharpness"] = schema.OPTIONS[-1]
    from faceanything_blender.packaging import enable_checkout
    import importlib
    addon = importlib.import_module(enable_checkout())
    from faceanything_blender.__main__ import build_parser
    settings = bpy.context.scene.faceanything
    prop = settings.bl_rna.properties["sharpness"]
    drawn = []
    class Layout:
        def __getattr__(self, name):
            return lambda *args, **kw: drawn.append((name, args)) or Layout()
    addon.ui.draw_options(Layout(), settings)
    settings.sharpness = "hard"
    options = addon.capture_request.option_values(settings, addon.runtime_paths.get_preferences())
    args = build_parser().parse_args(["capture", "in.mp4", "-o", "o.blend", "--sharpness", "hard"])
    print(json.dumps({
        "items": [item.identifier for item in prop.enum_items], "default": prop.default,
        "description": "how sharp the mesh is" in prop.description,
        "drawn": ("prop", [None, "sharpness"]) in [(name, [None, *args[1:]]) for name, args in drawn],
        "request": options["sharpness"], "cli": args.sharpness,
    }))
''')


def test_an_option_added_to_the_schema_reaches_the_panel_the_cli_and_the_request(tmp_path):
    done = subprocess.run([sys.executable, "-c", ADDED_OPTION], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env={**__import__("os").environ, "BLENDER_USER_RESOURCES": str(tmp_path)})
    assert done.returncode == 0, done.stderr[-3000:]
    seen = json.loads(done.stdout.splitlines()[-1])
    assert seen == {"items": ["soft", "hard"], "default": "soft", "description": True, "drawn": True,
                    "request": "hard", "cli": "hard"}


def test_every_panel_option_is_a_property_with_the_schema_help_and_is_drawn(addon, scene):
    settings = scene.faceanything
    calls = []
    addon.ui.draw_options(RecordingLayout(calls), settings)
    drawn = {named["property"] for name, named in calls if name == "prop"}
    for option in addon.props.panel_options():
        prop = settings.bl_rna.properties[option.name]
        assert prop.description == option.help_text()
        assert option.name in drawn
        if option.kind == addon.props.schema.CHOICE:
            assert [item.identifier for item in prop.enum_items] == list(option.choices)
            assert getattr(settings, option.name) == option.default


def test_options_off_the_panel_are_blender_cli_flags(addon):
    from faceanything_blender.__main__ import BLENDER_OWNS, build_parser

    text = " ".join(build_parser()._subparsers._group_actions[0].choices["capture"].format_help().split())
    schema = addon.props.schema
    for option in schema.options_for(schema.CAPTURE, schema.RECONSTRUCT):
        flag = option.flag.removesuffix("s") if option.kind == schema.MAPPING else option.flag
        assert (flag in text) == (option.name not in BLENDER_OWNS), option.name
        if option.name not in BLENDER_OWNS:
            assert " ".join(option.help.split()[:3]) in text
    assert bpy.context.scene is not None


def test_frame_ranges_fill_from_the_timeline(addon, scene):
    """Each FIRST:LAST option has a button that writes the timeline's preview range (else the
    scene's range) into it, in footage frame numbers (scene frame N shows footage frame N)."""
    settings = scene.faceanything
    calls = []
    addon.ui.draw_options(RecordingLayout(calls), settings)
    buttons = [named for name, named in calls if name == "operator"
               and named["operator"] == "faceanything.frames_from_timeline"]
    ranges = [option.name for option in addon.props.panel_options() if option.is_frame_range]
    frames = [option.name for option in addon.props.panel_options() if option.is_frame_number]
    assert set(ranges) == {"frames", "rest_frames"} and frames == ["neutral_frame"]
    assert len(buttons) == len(ranges) + len(frames)
    scene.frame_start, scene.frame_end, scene.use_preview_range = 1, 120, False
    assert bpy.ops.faceanything.frames_from_timeline(option="rest_frames") == {"FINISHED"}
    scene.use_preview_range = True
    scene.frame_preview_start, scene.frame_preview_end = 5, 48
    bpy.ops.faceanything.frames_from_timeline(option="frames")
    assert settings.rest_frames == "1:120" and settings.frames == "5:48"
    options = addon.capture_request.option_values(settings, addon.runtime_paths.get_preferences())
    assert options["rest_frames"] == "1:120" and options["frames"] == "5:48"


def test_the_neutral_frame_takes_the_current_frame_and_is_checked(addon, scene):
    """The neutral frame is a text field (empty: estimated from the clip) with a button that writes
    the timeline's current frame; the request gets it as a number, and a bad one names the option."""
    settings = scene.faceanything
    options = addon.capture_request.option_values(settings, addon.runtime_paths.get_preferences())
    assert settings.neutral_frame == "" and options["neutral_frame"] is None
    scene.frame_set(37)
    assert bpy.ops.faceanything.frames_from_timeline(option="neutral_frame") == {"FINISHED"}
    options = addon.capture_request.option_values(settings, addon.runtime_paths.get_preferences())
    assert settings.neutral_frame == "37" and options["neutral_frame"] == 37
    settings.neutral_frame = "3a"
    try:
        addon.capture_request.option_values(settings, addon.runtime_paths.get_preferences())
    except addon.capture_request.CaptureError as error:
        assert "neutral_frame" in str(error) and "3a" in str(error)
    else:
        raise AssertionError("a bad neutral frame was accepted")
