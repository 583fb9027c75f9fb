"""Frame numbers: the footage's own, everywhere.

A frame is named by its *footage frame number*. For an image sequence whose file names all carry
a number (``plate.1001.exr``), that number; otherwise (a video, unnumbered images, one image) its
position counted from 1, the way Blender and Nuke number a movie's frames. That is what a
compositor matches against, so every surface uses it: ``--frames`` and ``pixel:FRAME:X:Y`` point
requests, the capture manifest, the reconstruction (``frame_numbers``), the Blender scene (scene
frame N shows footage frame N), the tracks CSV, the Live Link CSV and ``export --frame``.

Inside the runtime, arrays are indexed by *capture index* t (0-based position among the captured
frames) and footage is read by *source index* (0-based position in the footage); the manifest's
``frames.numbers`` and ``frames.source_indices`` convert between the three.

Standard library only, so the Blender extension loads this very file.
"""
from __future__ import annotations

import re

_LAST_NUMBER = re.compile(r"(\d+)(?!.*\d)")


def footage_frame_numbers(count: int, file_stems: list[str] | None = None) -> list[int]:
    """The footage frame number of each source frame.

    `file_stems` are an image sequence's file names without their suffix, in reading order; their
    last run of digits is the frame number when every file has one and the numbers increase.
    """
    if file_stems and len(file_stems) == count:
        matches = [_LAST_NUMBER.search(stem) for stem in file_stems]
        if all(matches):
            numbers = [int(match.group(1)) for match in matches]
            if all(later > earlier for earlier, later in zip(numbers, numbers[1:])):
                return numbers
    return list(range(1, count + 1))


def select_frames(numbers: list[int], first: int | None, last: int | None, step: int) -> list[int]:
    """Source indices of the frames numbered `first` to `last` (both included; None: the footage's
    end), every `step`-th footage frame number counted from `first`."""
    first = numbers[0] if first is None else first
    last = numbers[-1] if last is None else last
    return [index for index, number in enumerate(numbers) if first <= number <= last and (number - first) % step == 0]


def describe_range(numbers: list[int]) -> str:
    """``"1 to 75"``: the footage's frame numbers, for messages."""
    return f"{numbers[0]} to {numbers[-1]}" if numbers else "none"
