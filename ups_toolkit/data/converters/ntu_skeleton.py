"""Raw NTU RGB+D ``.skeleton`` files (Kinect v2, 25 joints), NTU-60 and NTU-120 (docs/formats.md §1).

The file is read as a whitespace token stream, checking every count it announces, so a truncated or damaged file is
reported with its line number instead of failing deep inside the reader.

Body selection (``--bodies``, recorded in the dataset info):

* ``umurl`` (default; the ST-GCN / UmURL preparation behind the USDRL numbers): body slots are taken in the order
  each frame lists them (up to 4), and the 2 slots with the highest motion energy are kept, energy = sum over x, y, z
  of the standard deviation over the slot's non-zero frames. All frames are kept.
* ``pyskl`` (kennymckormick/pyskl tools/data/ntu_preproc.py): bodies are grouped by their 64-bit ``bodyID``; a body
  whose x-spread exceeds 0.8 x its y-spread on more than 69.754 % of its frames is dropped as noise (chairs,
  reflections) unless that would drop every body; the 2 bodies with the largest motion (sum of per-coordinate
  variance) are kept; leading and trailing frames with no kept body are trimmed.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ...errors import DataFormatError
from ...resources import load_label_set
from .base import Converter, DatasetSpec

NAME_PATTERN = re.compile(r"S(\d{3})C(\d{3})P(\d{3})R(\d{3})A(\d{3})")

# docs/formats.md §16 (shahroudy/NTURGB-D): training performers of the cross-subject protocols.
XSUB_TRAIN_PERFORMERS = {
    1, 2, 4, 5, 8, 9, 13, 14, 15, 16, 17, 18, 19, 25, 27, 28, 31, 34, 35, 38,
    45, 46, 47, 49, 50, 52, 53, 54, 55, 56, 57, 58, 59, 70, 74, 78, 80, 81, 82, 83, 84, 85, 86, 89,
    91, 92, 93, 94, 95, 97, 98, 100, 103,
}  # the NTU-60 list is the first 20; NTU-120 adds the rest (NTU-60 has no performer above 40)
XVIEW_TRAIN_CAMERAS = {2, 3}

NUM_JOINTS = 25
VALUES_PER_JOINT = 12
POSITION_VALUES = 7  # x y z, depthX depthY, colorX colorY
BODY_INFO_VALUES = 10


def parse_name(stem: str) -> dict:
    match = NAME_PATTERN.fullmatch(stem)
    if not match:
        raise DataFormatError("file name is not of the form SsssCcccPpppRrrrAaaa", file=stem)
    setup, camera, performer, replication, action = (int(g) for g in match.groups())
    return dict(setup=setup, camera=camera, performer=performer, replication=replication, action=action)


class _Tokens:
    """The file's whitespace tokens. Line numbers are worked out only when an error needs one, which keeps the
    common path a plain ``str.split`` plus vectorised float conversion (about 10x faster than tracking lines)."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.text = path.read_text()
        except UnicodeDecodeError as e:
            raise DataFormatError(f"not a text file ({e})", file=path) from None
        self.tokens: list[str] = self.text.split()
        self.pos = 0
        self._tokens_through_line = None

    def line_of(self, index: int) -> int:
        """1-based line of token ``index`` (one past the last line for an index past the end)."""
        if self._tokens_through_line is None:
            self._tokens_through_line = np.cumsum([len(line.split()) for line in self.text.splitlines()])
        return int(np.searchsorted(self._tokens_through_line, index, side="right")) + 1

    @property
    def line(self) -> int:
        return self.line_of(self.pos)

    def _fail(self, message: str, index: int):
        raise DataFormatError(message, file=self.path, line=self.line_of(index))

    def integer(self, what: str) -> int:
        if self.pos >= len(self.tokens):
            self._fail(f"file ends early: expected {what}", self.pos)
        tok = self.tokens[self.pos]
        try:
            value = int(tok)
        except ValueError:
            self._fail(f"expected {what} (an integer), found {tok!r}", self.pos)
        self.pos += 1
        return value

    def floats(self, count: int, what: str) -> np.ndarray:
        block = self.tokens[self.pos : self.pos + count]
        if len(block) < count:
            self._fail(f"file ends early: expected {what}", len(self.tokens))
        try:
            values = np.array(block, dtype=np.float64)
        except ValueError:
            for i, tok in enumerate(block):
                try:
                    float(tok)
                except ValueError:
                    self._fail(f"expected {what} (a number), found {tok!r}", self.pos + i)
            raise
        self.pos += count
        return values


def read_skeleton_file(path: Path) -> tuple[int, list[list[tuple[int, np.ndarray]]]]:
    """Parse one ``.skeleton`` file.

    Returns (num_frames, frames) where frames[t] is a list of (body_id, joints (25, 12)) in file order.
    """
    tokens = _Tokens(path)
    num_frames = tokens.integer("the frame count")
    if num_frames <= 0:
        raise DataFormatError(f"frame count is {num_frames}: empty sequence", file=path, line=1)
    frames = []
    for t in range(num_frames):
        start = tokens.pos
        num_bodies = tokens.integer(f"the body count of frame {t}")
        if not 0 <= num_bodies <= 6:
            tokens._fail(f"frame {t} announces {num_bodies} bodies (Kinect v2 tracks 0-6)", start)
        bodies = []
        for b in range(num_bodies):
            body_id = tokens.integer(f"bodyID of body {b} in frame {t}")  # 64-bit id: int, never float
            tokens.floats(BODY_INFO_VALUES - 1, f"body info of body {b} in frame {t}")
            count_at = tokens.pos
            num_joints = tokens.integer(f"the joint count of body {b} in frame {t}")
            if num_joints != NUM_JOINTS:
                tokens._fail(f"frame {t}, body {b}: {num_joints} joints, expected {NUM_JOINTS}", count_at)
            first_value = tokens.pos
            joints = tokens.floats(NUM_JOINTS * VALUES_PER_JOINT, f"joint values of body {b} in frame {t}")
            joints = joints.reshape(NUM_JOINTS, VALUES_PER_JOINT)
            # Checked here, not only in validate_sample, so that the error names the line. Only the position
            # values (x y z, depth and color pixels) are checked: orientations are never used.
            finite = np.isfinite(joints[:, :POSITION_VALUES]).all(axis=1)
            if not finite.all():
                j = int(np.argmin(finite))
                tokens._fail(f"frame {t}, body {b}, joint {j}: non-finite coordinate", first_value + j * VALUES_PER_JOINT)
            bodies.append((body_id, joints))
        frames.append(bodies)
    if tokens.pos != len(tokens.tokens):
        tokens._fail(f"{len(tokens.tokens) - tokens.pos} unexpected values after the last frame", tokens.pos)
    return num_frames, frames


def _nonzero_std_energy(track: np.ndarray) -> float:
    """(T, V, 3): sum over axes of the std over non-zero frames (ST-GCN/UmURL ``get_nonzero_std``)."""
    valid = track.reshape(len(track), -1).any(axis=1)
    if not valid.any():
        return 0.0
    s = track[valid]
    return float(s[..., 0].std() + s[..., 1].std() + s[..., 2].std())


def _positions(joints: np.ndarray) -> np.ndarray:
    return joints[:, :POSITION_VALUES]


def select_bodies_umurl(num_frames: int, frames, channels: slice, max_body: int = 4, keep: int = 2) -> np.ndarray:
    """(T, keep, V, len(channels)). Bodies are ranked on their xyz positions whichever ``channels`` are returned,
    so 2D pixel output keeps the same bodies as 3D output."""
    data = np.zeros((max_body, num_frames, NUM_JOINTS, POSITION_VALUES), np.float64)
    for t, bodies in enumerate(frames):
        for m, (_, joints) in enumerate(bodies[:max_body]):
            data[m, t] = _positions(joints)
    energy = np.array([_nonzero_std_energy(d[..., :3]) for d in data])
    order = np.argsort(-energy, kind="stable")[:keep]
    return data[order][..., channels].transpose(1, 0, 2, 3)  # (T, M, V, C)


def select_bodies_pyskl(num_frames: int, frames, channels: slice, keep: int = 2) -> np.ndarray:
    """(T', keep, V, len(channels)), T' after trimming. Noise and motion are judged on xyz, as in pyskl."""
    tracks: dict[int, np.ndarray] = {}
    for t, bodies in enumerate(frames):
        for body_id, joints in bodies:
            track = tracks.setdefault(body_id, np.zeros((num_frames, NUM_JOINTS, POSITION_VALUES)))
            track[t] = _positions(joints)
    candidates = list(tracks.values())

    def valid_frames(track):
        return track[..., :3].reshape(num_frames, -1).any(axis=1)

    def is_noise(track):
        xy = track[valid_frames(track)][..., :2]
        spread_x = xy[..., 0].max(axis=1) - xy[..., 0].min(axis=1)
        spread_y = xy[..., 1].max(axis=1) - xy[..., 1].min(axis=1)
        return np.mean(spread_x > 0.8 * spread_y) > 0.69754

    kept = [tr for tr in candidates if not is_noise(tr)] or candidates
    motion = [float(tr[valid_frames(tr)][..., :3].reshape(-1, 3).var(axis=0).sum()) for tr in kept]
    order = np.argsort(-np.array(motion), kind="stable")[:keep]
    data = np.zeros((num_frames, keep, NUM_JOINTS, POSITION_VALUES))
    for slot, i in enumerate(order):
        data[:, slot] = kept[i]
    present = data[..., :3].reshape(num_frames, -1).any(axis=1)
    first, last = np.argmax(present), num_frames - np.argmax(present[::-1])
    return data[first:last][..., channels]


class NTUSkeletonConverter(Converter):
    name = "ntu-skeleton"
    version = "1"
    description = "NTU RGB+D 60/120 raw .skeleton files (Kinect v2, 25 joints)"
    protocols = {
        "xsub": lambda s: "train" if int(s["subject"][1:]) in XSUB_TRAIN_PERFORMERS else "test",
        "xview": lambda s: "train" if int(s["view"][1:]) in XVIEW_TRAIN_CAMERAS else "test",
        "xset": lambda s: "train" if s["setup"] % 2 == 0 else "test",
    }

    @classmethod
    def add_arguments(cls, parser):
        parser.add_argument("--bodies", choices=["umurl", "pyskl"], default="umurl", help="body selection rule")
        parser.add_argument("--max-persons", type=int, default=2, help="bodies kept per sample")
        parser.add_argument("--missing-list", help="missing-skeleton list (names to skip; header lines ignored)")
        parser.add_argument(
            "--coords", choices=["xyz", "color", "depth"], default="xyz",
            help="xyz = camera metres (3D); color = 1920x1080 pixels, depth = 512x424 pixels (2D)",
        )
        parser.add_argument("--label-set", choices=["ntu60", "ntu120"], default="ntu120")

    def spec(self):
        two_d = self.options.coords != "xyz"
        return DatasetSpec(
            layout="ntu25",
            num_persons=self.options.max_persons,
            channels=2 if two_d else 3,
            class_names=load_label_set(self.options.label_set),
            with_img_shape=two_d,
            fps=30.0,
        )

    def _missing(self) -> set[str]:
        if not self.options.missing_list:
            return set()
        names = Path(self.options.missing_list).read_text().split()
        return {n for n in names if NAME_PATTERN.fullmatch(n)}

    def items(self):
        files = [self.src] if self.src.is_file() else sorted(self.src.rglob("*.skeleton"))
        missing = self._missing()
        return [f for f in files if f.stem not in missing]

    def input_files(self):
        extra = [Path(self.options.missing_list)] if self.options.missing_list else []
        return self.items() + extra

    def read_item(self, path: Path):
        meta = parse_name(path.stem)
        num_classes = len(self.spec().class_names)
        if meta["action"] > num_classes:
            raise DataFormatError(
                f"action A{meta['action']:03d} is outside label set {self.options.label_set!r}", file=path
            )
        num_frames, frames = read_skeleton_file(path)
        if not any(frames):
            raise DataFormatError("no skeleton in any frame (is it on the missing-skeleton list?)", file=path)
        channels = {"xyz": slice(0, 3), "depth": slice(3, 5), "color": slice(5, 7)}[self.options.coords]
        if self.options.bodies == "umurl":
            keypoint = select_bodies_umurl(num_frames, frames, channels, keep=self.options.max_persons)
        else:
            keypoint = select_bodies_pyskl(num_frames, frames, channels, keep=self.options.max_persons)
        sample = dict(
            keypoint=keypoint.astype(np.float32),
            label=meta["action"] - 1,
            sample_id=path.stem,
            subject=f"P{meta['performer']:03d}",
            view=f"C{meta['camera']:03d}",
            setup=meta["setup"],
            replication=meta["replication"],
            source_file=str(path),
        )
        if self.options.coords != "xyz":
            sample["img_shape"] = [1080, 1920] if self.options.coords == "color" else [424, 512]
        yield sample
