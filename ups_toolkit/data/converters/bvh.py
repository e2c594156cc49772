"""BVH motion capture files -> 3D joint positions by forward kinematics (docs/formats.md §14).

Reading. ``HIERARCHY`` is read as a whitespace token stream (mixed CRLF/LF line endings are common: the CMU
"cgspeed" files mix them), with each token's line kept for error messages: ``ROOT``/``JOINT name { OFFSET x y z
CHANNELS n c1 .. cn ... }`` and ``End Site { OFFSET x y z }``. ``MOTION`` is followed by ``Frames: N``,
``Frame Time: dt`` and N lines, each holding the channel values of all joints in declaration (depth-first) order.
A wrong value count on a line, a non-number, NaN/inf, or fewer/more lines than announced is an error naming the
file and line.

Kinematics (ups_toolkit/skeleton/kinematics.py, column vectors). Rotations are in degrees; a joint's local rotation
is the product of its rotation channels in the listed order, ``R_c1 @ R_c2 @ R_c3`` (channel order is per joint:
the CMU files mix ``Zrotation Yrotation Xrotation`` and ``Zrotation Xrotation Yrotation``); ``G_j = G_parent @ R_j``
and ``p_j = p_parent + G_parent @ (offset_j + t_j)``, where t_j are the joint's own position channels if it has any
(usually only the root). The root is at ``offset_root + t_root``. End Sites have no channels; ``--end-sites`` keeps
them as leaf joints named ``<parent>_end``.

Layout. The joints of a file must be exactly (names and parents, in order) those of a registered layout, chosen with
``--layout`` (default ``cmu_bvh31``, or ``cmu_bvh38`` with ``--end-sites``: the cgspeed CMU hierarchy). To convert
another skeleton, register its layout in ``ups_toolkit/skeleton/layouts.yaml`` with the file's joint names.

Units. Positions are in the file's own length unit times ``--scale`` (default 1). The cgspeed CMU conversion keeps
the CMU ASF unit, 1/0.45 inch = 0.0564444 m, so ``--scale 0.0564444`` gives metres. fps = 1 / Frame Time (rounded
to 3 decimals: cgspeed writes 0.0083333 for 120 fps). BVH files carry no action label: samples are unlabeled (-1).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, DataFormatError
from ...skeleton import get_layout
from ...skeleton.kinematics import forward_kinematics
from ...skeleton.rotations import axis_rotation
from ..text_rows import parse_number_row
from .base import Converter, DatasetSpec

ROTATION_CHANNELS = {"xrotation": "x", "yrotation": "y", "zrotation": "z"}
POSITION_CHANNELS = {"xposition": 0, "yposition": 1, "zposition": 2}
END_SITE_SUFFIX = "_end"
# CMU file names are <subject>_<trial>
CMU_NAME = re.compile(r"(\d+)_(\d+)")


@dataclass
class BVHJoint:
    name: str
    parent: int
    offset: np.ndarray  # (3,)
    channels: list[str] = field(default_factory=list)
    end_site: bool = False


@dataclass
class BVHMotion:
    path: Path
    joints: list[BVHJoint]
    frame_time: float
    values: np.ndarray  # (T, total channels), float64, as in the file (degrees, file units)

    @property
    def fps(self) -> float:
        return round(1.0 / self.frame_time, 3)

    def joint_names(self, end_sites: bool) -> list[str]:
        return [j.name for j in self.joints if end_sites or not j.end_site]


class _Tokens:
    def __init__(self, path: Path, lines: list[str]):
        self.path = path
        self.tokens = [(tok, n) for n, line in enumerate(lines, 1) for tok in line.split()]
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def take(self, what: str) -> tuple[str, int]:
        if self.pos >= len(self.tokens):
            last = self.tokens[-1][1] if self.tokens else 0
            raise DataFormatError(f"file ends early: expected {what}", file=self.path, line=last + 1)
        tok = self.tokens[self.pos]
        self.pos += 1
        return tok

    def expect(self, word: str) -> int:
        tok, line = self.take(repr(word))
        if tok.lower() != word.lower():
            raise DataFormatError(f"expected {word!r}, found {tok!r}", file=self.path, line=line)
        return line

    def number(self, what: str) -> float:
        tok, line = self.take(what)
        try:
            value = float(tok)
        except ValueError:
            raise DataFormatError(f"expected {what} (a number), found {tok!r}", file=self.path, line=line) from None
        if not np.isfinite(value):
            raise DataFormatError(f"{what} is {tok}", file=self.path, line=line)
        return value

    def rest_of_line(self, line: int) -> str:
        words = []
        while self.pos < len(self.tokens) and self.tokens[self.pos][1] == line and self.tokens[self.pos][0] != "{":
            words.append(self.tokens[self.pos][0])
            self.pos += 1
        return " ".join(words)


def _parse_joint(tokens: _Tokens, joints: list[BVHJoint], parent: int, keyword_line: int, name: str) -> None:
    path = tokens.path
    if not name:
        raise DataFormatError("joint without a name", file=path, line=keyword_line)
    tokens.expect("{")
    tokens.expect("OFFSET")
    offset = np.array([tokens.number(f"OFFSET {axis} of joint {name!r}") for axis in "xyz"])
    tokens.expect("CHANNELS")
    count_tok, count_line = tokens.take(f"the channel count of joint {name!r}")
    if not count_tok.isdigit():
        raise DataFormatError(f"expected the channel count of joint {name!r}, found {count_tok!r}", file=path,
                              line=count_line)
    channels = []
    for _ in range(int(count_tok)):
        tok, line = tokens.take(f"a channel name of joint {name!r}")
        if tok.lower() not in ROTATION_CHANNELS and tok.lower() not in POSITION_CHANNELS:
            raise DataFormatError(f"unknown channel {tok!r} of joint {name!r}", file=path, line=line)
        channels.append(tok.lower())
    index = len(joints)
    joints.append(BVHJoint(name=name, parent=parent, offset=offset, channels=channels))
    while True:
        tok, line = tokens.take(f"JOINT, End Site or '}}' closing joint {name!r}")
        if tok == "}":
            return
        if tok.upper() == "JOINT":
            _parse_joint(tokens, joints, index, line, tokens.rest_of_line(line))
        elif tok.lower() == "end":
            tokens.expect("Site")
            tokens.expect("{")
            tokens.expect("OFFSET")
            site = np.array([tokens.number(f"End Site OFFSET {axis} of joint {name!r}") for axis in "xyz"])
            tokens.expect("}")
            joints.append(BVHJoint(name=name + END_SITE_SUFFIX, parent=index, offset=site, end_site=True))
        else:
            raise DataFormatError(f"expected JOINT, End Site or '}}' in joint {name!r}, found {tok!r}", file=path,
                                  line=line)


def read_bvh(path: str | Path) -> BVHMotion:
    """Parse one BVH file (hierarchy and motion); see the module docstring for the checks."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise DataFormatError(f"not a UTF-8 text file ({e.reason} at byte {e.start})", file=path) from None
    lines = text.splitlines()  # \r\n, \n and lone \r alike
    motion_line = next((i for i, line in enumerate(lines) if line.strip().upper() == "MOTION"), None)
    if motion_line is None:
        raise DataFormatError("no MOTION section", file=path, line=len(lines) + 1)
    tokens = _Tokens(path, lines[:motion_line])
    tokens.expect("HIERARCHY")
    joints: list[BVHJoint] = []
    tok, line = tokens.take("ROOT")
    if tok.upper() != "ROOT":
        raise DataFormatError(f"expected ROOT, found {tok!r}", file=path, line=line)
    _parse_joint(tokens, joints, -1, line, tokens.rest_of_line(line))
    if tokens.peek() is not None:
        tok, line = tokens.take("")
        raise DataFormatError(f"unexpected {tok!r} after the root joint (one ROOT per file is supported)", file=path,
                              line=line)
    names = [j.name for j in joints]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise DataFormatError(f"duplicate joint names {duplicates}", file=path)

    # MOTION header: "Frames: N" and "Frame Time: dt" on the next two non-empty lines
    header = [(i, line) for i, line in enumerate(lines[motion_line + 1:], motion_line + 2) if line.strip()][:2]
    frames_match = re.fullmatch(r"\s*Frames:\s*(\d+)\s*", header[0][1]) if header else None
    if not frames_match:
        raise DataFormatError("expected 'Frames: N' after MOTION", file=path,
                              line=header[0][0] if header else motion_line + 2)
    time_match = re.fullmatch(r"\s*Frame\s+Time:\s*(\S+)\s*", header[1][1]) if len(header) > 1 else None
    try:
        frame_time = float(time_match.group(1)) if time_match else float("nan")
    except ValueError:
        frame_time = float("nan")
    if not (np.isfinite(frame_time) and frame_time > 0):
        raise DataFormatError("expected 'Frame Time: dt' with dt > 0 seconds", file=path,
                              line=header[1][0] if len(header) > 1 else header[0][0] + 1)
    num_frames = int(frames_match.group(1))
    if num_frames == 0:
        raise DataFormatError("Frames: 0 (empty motion)", file=path, line=header[0][0])
    num_channels = sum(len(j.channels) for j in joints)
    first = header[1][0]  # 1-based line number of "Frame Time", data follows
    values = np.empty((num_frames, num_channels))
    t = 0
    for number, line in enumerate(lines[first:], first + 1):
        words = line.split()
        if not words:
            continue
        if t == num_frames:
            raise DataFormatError(f"more motion lines than 'Frames: {num_frames}' announces", file=path, line=number)
        if len(words) != num_channels:
            raise DataFormatError(f"frame {t} has {len(words)} values, expected {num_channels} (one per channel)",
                                  file=path, line=number)
        values[t] = parse_number_row(words, file=path, line=number, context=f"frame {t}: ")
        t += 1
    if t < num_frames:
        raise DataFormatError(f"file ends early: 'Frames: {num_frames}' announced, {t} motion lines found "
                              "(truncated file?)", file=path, line=len(lines) + 1)
    return BVHMotion(path=path, joints=joints, frame_time=frame_time, values=values)


def bvh_positions(motion: BVHMotion, *, end_sites: bool = False) -> np.ndarray:
    """Global joint positions (T, V, 3) in the file's units; End Sites included only with ``end_sites``."""
    t = len(motion.values)
    v = len(motion.joints)
    local = np.broadcast_to(np.eye(3), (t, v, 3, 3)).copy()
    offsets = np.broadcast_to(np.stack([j.offset for j in motion.joints]), (t, v, 3)).copy()
    root_positions = np.zeros((t, 3))
    column = 0
    for index, joint in enumerate(motion.joints):
        translation = np.zeros((t, 3))
        for channel in joint.channels:
            values = motion.values[:, column]
            column += 1
            if channel in ROTATION_CHANNELS:
                local[:, index] = local[:, index] @ axis_rotation(ROTATION_CHANNELS[channel], np.deg2rad(values))
            else:
                translation[:, POSITION_CHANNELS[channel]] = values
        if joint.parent < 0:
            root_positions = translation
        else:
            offsets[:, index] += translation
    positions = forward_kinematics(local, offsets, [j.parent for j in motion.joints], root_positions)
    keep = [i for i, j in enumerate(motion.joints) if end_sites or not j.end_site]
    return positions[:, keep]


def check_layout(motion: BVHMotion, layout_name: str, *, end_sites: bool) -> None:
    """The file's joints (names and parents, in order) must be the layout's; else a clear DataFormatError."""
    layout = get_layout(layout_name)
    kept = [j for j in motion.joints if end_sites or not j.end_site]
    names = [j.name for j in kept]
    hint = "" if end_sites else " (End Sites are left out; --end-sites keeps them)"
    if len(names) != layout.num_joints:
        raise DataFormatError(
            f"the file has {len(names)} joints{hint} but layout {layout.name!r} has {layout.num_joints}; pass "
            "--layout with a layout registered for this skeleton", file=motion.path)
    for i, (name, expected) in enumerate(zip(names, layout.joint_names)):
        if name != expected:
            raise DataFormatError(
                f"joint {i} is {name!r} in the file but {expected!r} in layout {layout.name!r}; pass --layout with "
                "a layout registered for this skeleton", file=motion.path)
    index = {id(j): i for i, j in enumerate(kept)}
    parents = [index[id(motion.joints[j.parent])] if j.parent >= 0 else -1 for j in kept]
    if tuple(parents) != layout.parents:
        joint = next(i for i, (a, b) in enumerate(zip(parents, layout.parents)) if a != b)
        raise DataFormatError(
            f"joint {names[joint]!r} has parent {parents[joint]} in the file but {layout.parents[joint]} in layout "
            f"{layout.name!r}", file=motion.path)


class BVHConverter(Converter):
    name = "bvh"
    version = "1"
    description = "BVH motion capture (e.g. CMU cgspeed) -> 3D joint positions by forward kinematics"

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--layout", help="registered layout of the file's skeleton "
                                             "(default cmu_bvh31, or cmu_bvh38 with --end-sites)")
        parser.add_argument("--end-sites", action="store_true", help="keep End Sites as leaf joints '<parent>_end'")
        parser.add_argument("--scale", type=float, default=1.0,
                            help="multiply positions by this factor (cgspeed CMU units -> metres: 0.0564444)")

    def _layout_name(self) -> str:
        if self.options.layout:
            return get_layout(self.options.layout).name
        return "cmu_bvh38" if self.options.end_sites else "cmu_bvh31"

    def spec(self):
        if not (np.isfinite(self.options.scale) and self.options.scale > 0):
            raise ConfigError(f"--scale must be a positive number, got {self.options.scale}")
        return DatasetSpec(layout=self._layout_name(), num_persons=1, channels=3, class_names=[],
                           fps=self._first_fps())

    def _first_fps(self) -> float:
        """fps of the first file (dataset info only; every sample stores its own)."""
        items = self.items()
        if not items:
            return 30.0
        with open(items[0], "rb") as fh:
            for raw in fh:
                match = re.match(rb"\s*Frame\s+Time:\s*(\S+)", raw)
                if match:
                    try:
                        return round(1.0 / float(match.group(1)), 3)
                    except (ValueError, ZeroDivisionError):
                        break
        return 30.0

    def items(self):
        if self.src.is_file():
            return [self.src]
        return sorted(p for p in self.src.rglob("*") if p.is_file() and p.suffix.lower() == ".bvh")

    def read_item(self, path: Path):
        motion = read_bvh(path)
        layout = self._layout_name()
        check_layout(motion, layout, end_sites=self.options.end_sites)
        positions = bvh_positions(motion, end_sites=self.options.end_sites) * self.options.scale
        match = CMU_NAME.fullmatch(path.stem)
        yield dict(
            keypoint=positions[:, None].astype(np.float32),
            layout=layout,
            label=-1,
            fps=motion.fps,
            sample_id=path.relative_to(self.src).with_suffix("").as_posix() if self.src.is_dir() else path.stem,
            subject=match.group(1) if match else "",
            replication=int(match.group(2)) if match else -1,
            source_file=str(path),
        )
