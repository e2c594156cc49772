"""PKU-MMD converter: skeleton / label / split readers, untrimmed and trimmed output, bad input, real data."""

import argparse
import collections
import shutil
import zipfile

import numpy as np
import pytest
from conftest import FIXTURES, real_data, run_cli

from ups_toolkit.data.converters.pku_mmd import (
    PKUMMDConverter,
    read_pku_actions,
    read_pku_labels,
    read_pku_skeleton,
    read_pku_split,
)
from ups_toolkit.data.prepared import load_prepared, prepared_info
from ups_toolkit.data.xlsx import read_xlsx_rows
from ups_toolkit.errors import DataFormatError
from ups_toolkit.resources import load_label_set

FIX = FIXTURES / "pku_mmd"


def fixture_value(t, m, v, c):
    """The closed formula the fixture skeleton files were written with (6 decimals)."""
    return round((m + 1) + 0.01 * v + 0.1 * c + 0.0001 * t, 6)


def convert(src, out, *options):
    return run_cli("convert", "pku-mmd", src, out, "--quiet", *options)


def assert_fails_cleanly(result, out, *fragments):
    """Exit 2, one error line naming what is wrong, and nothing left next to the output path."""
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    assert not out.exists()
    assert not list(out.parent.glob(f"{out.name}.tmp-*"))


def writable_copy(tmp_path):
    """The fixture tree in tmp_path, to damage one file per test."""
    root = tmp_path / "pku"
    shutil.copytree(FIX, root)
    return root


# ---- readers on the fixtures --------------------------------------------------------------------------------------
def test_skeleton_lines_are_frames_person_major_joint_then_xyz():
    keypoint = read_pku_skeleton(FIX / "skeleton" / "0291-M.txt")
    assert keypoint.shape == (6, 2, 25, 3) and keypoint.dtype == np.float32
    t, m, v, c = np.meshgrid(range(6), range(2), range(25), range(3), indexing="ij")
    expected = (m + 1) + 0.01 * v + 0.1 * c + 0.0001 * t
    expected[:3, 1] = 0.0  # person 2 absent in frames 0-2: written as zeros
    np.testing.assert_allclose(keypoint, expected, atol=1e-6)


def test_label_lines_become_half_open_segments():
    instances = read_pku_labels(FIX / "labels" / "0002-L.txt")
    assert [(i.action, i.start, i.end, i.confidence, i.line) for i in instances] == [(3, 0, 2, 2, 1), (12, 4, 6, 1, 2)]
    assert instances[0].segment == {"label": 2, "start": 0, "end": 3}  # frame 0 is a frame; end inclusive -> +1


def test_split_file_with_the_official_typo():
    split = read_pku_split(FIX / "split" / "cross-subject.txt")
    assert split == {"train": ["0002-L", "0002-M", "0002-R"], "test": ["0291-L", "0291-M", "0291-R"]}


@pytest.mark.parametrize(
    "line, message",
    [
        ("1,4925,4036,2", "bad interval: start 4925, end 4036"),  # the 0043-L.txt:21 case
        ("1,10,20", "expected 4 comma-separated fields"),
        ("1,10,20,2,7", "found 5"),
        ("52,10,20,2", "class 52 outside 1..51"),
        ("0,10,20,2", "class 0 outside 1..51"),
        ("5,a,20,2", "non-integer field"),
        ("5,10,20,3", "confidence 3"),
    ],
)
def test_malformed_label_line_names_file_and_line(tmp_path, line, message):
    path = tmp_path / "0043-L.txt"
    path.write_text(f"5,1,2,2\n\n{line}\n")
    with pytest.raises(DataFormatError, match=message) as err:
        read_pku_labels(path)
    assert err.value.line == 3 and str(path) in str(err.value)


def test_split_file_errors(tmp_path):
    path = tmp_path / "cross-view.txt"
    path.write_text("0002-L, 0002-M\n")
    with pytest.raises(DataFormatError, match="before a 'Training videos:'"):
        read_pku_split(path)
    path.write_text("Training videos: \n0002-L, 0002-M,\nValidataion videos: \n0002-L,\n")
    with pytest.raises(DataFormatError, match="listed twice") as err:
        read_pku_split(path)
    assert err.value.line == 4
    path.write_text("Training videos: \n0002-L, 0002-X,\nValidataion videos: \n0003-L,\n")
    with pytest.raises(DataFormatError, match="'0002-X' is not a PKU-MMD video id"):
        read_pku_split(path)
    path.write_text("Training videos: \n0002-L,\n")
    with pytest.raises(DataFormatError, match="no video ids under a 'Validataion videos:'"):
        read_pku_split(path)


# ---- the xlsx reader --------------------------------------------------------------------------------------------
def write_xlsx(path, sheet_xml, shared_strings=None):
    """A minimal OOXML workbook whose only sheet is stored as ``xl/worksheets/data.xml`` (not ``sheet1.xml``)."""
    main = "http://schemas.openxmlformats.org/spreadsheetml/2006/main"
    rel = "http://schemas.openxmlformats.org/officeDocument/2006/relationships"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(
            "xl/workbook.xml",
            f'<workbook xmlns="{main}" xmlns:r="{rel}"><sheets><sheet name="A" sheetId="3" r:id="rId7"/></sheets></workbook>',
        )
        z.writestr(
            "xl/_rels/workbook.xml.rels",
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            f'<Relationship Id="rId7" Type="{rel}/worksheet" Target="worksheets/data.xml"/></Relationships>',
        )
        z.writestr("xl/worksheets/data.xml", f'<worksheet xmlns="{main}"><sheetData>{sheet_xml}</sheetData></worksheet>')
        if shared_strings is not None:
            items = "".join(shared_strings)
            z.writestr("xl/sharedStrings.xml", f'<sst xmlns="{main}">{items}</sst>')


def test_xlsx_reader_shared_inline_rich_and_numeric_cells(tmp_path):
    path = tmp_path / "Actions.xlsx"
    shared = [
        "<si><t>Label</t></si>",
        "<si><t>Action</t></si>",
        '<si><t>bow</t><rPh sb="0" eb="1"><t>BO</t></rPh></si>',  # phonetic hint: not part of the text
        "<si><r><t>brushing </t></r><r><t>hair</t></r></si>",  # rich text runs
    ]
    sheet = (
        '<row r="1"><c r="A1" t="s"><v>0</v></c><c r="B1" t="s"><v>1</v></c></row>'
        '<row r="2"><c r="A2"><v>1</v></c><c r="B2" t="s"><v>2</v></c></row>'
        '<row r="3"><c r="A3"><v>2</v></c><c r="B3" t="s"><v>3</v></c></row>'
        '<row r="5"><c r="A5"><v>3</v></c><c r="C5" t="inlineStr"><is><t>x</t></is></c><c r="B5" t="inlineStr"><is><t>cheer up</t></is></c></row>'
    )
    write_xlsx(path, sheet, shared)
    assert read_xlsx_rows(path) == [["Label", "Action"], ["1", "bow"], ["2", "brushing hair"], ["3", "cheer up", "x"]]
    assert read_pku_actions(path) == ["bow", "brushing hair", "cheer up"]


def test_xlsx_reader_rejects_non_workbooks(tmp_path):
    path = tmp_path / "Actions.xlsx"
    path.write_text("Label,Action\n1,bow\n")
    with pytest.raises(DataFormatError, match="not a readable .xlsx workbook") as err:
        read_xlsx_rows(path)
    assert err.value.file == path
    write_xlsx(path, '<row r="1"><c r="A1" t="s"><v>5</v></c></row>', ["<si><t>a</t></si>"])
    with pytest.raises(DataFormatError, match="shared string 5 of 1"):
        read_xlsx_rows(path)


# ---- conversion on the fixtures ---------------------------------------------------------------------------------
def test_untrimmed_conversion_with_labels_and_split(tmp_path):
    out = tmp_path / "out"
    result = convert(
        FIX / "skeleton", out, "--labels", FIX / "labels", "--split-file", FIX / "split" / "cross-subject.txt"
    )
    assert result.returncode == 0, result.stderr
    data = load_prepared(out)
    assert sorted(data) == ["test", "train"]  # README.txt in the folder is not a video
    train, test = data["train"][0], data["test"][0]
    assert train["sample_id"] == "0002-L" and train["view"] == "L" and train["label"] == -1
    assert test["sample_id"] == "0291-M" and test["view"] == "M"
    assert train["keypoint"].shape == (8, 2, 25, 3)
    assert train["keypoint"][5, 1, 24, 2] == pytest.approx(fixture_value(5, 1, 24, 2), abs=1e-6)
    segments = [{k: int(v) for k, v in s.items()} for s in train["segments"]]
    assert segments == [{"label": 2, "start": 0, "end": 3}, {"label": 11, "start": 4, "end": 7}]
    assert train["frame_labels"].tolist() == [2, 2, 2, -1, 11, 11, 11, -1]
    assert test["frame_labels"].tolist() == [-1, 13, 13, 13, 13, -1]
    assert float(train["fps"]) == 30.0 and train["layout"] == "ntu25"
    assert prepared_info(out)["class_names"] == load_label_set("pku_mmd51")


def test_trim_cuts_one_clip_per_instance(tmp_path):
    out = tmp_path / "out"
    result = convert(FIX / "skeleton", out, "--labels", FIX / "labels", "--trim")
    assert result.returncode == 0, result.stderr
    clips = load_prepared(out, "all")
    assert list(clips["sample_id"]) == ["0002-L_001", "0002-L_002", "0291-M_001"]
    assert [int(x) for x in clips["label"]] == [2, 11, 13]
    assert [len(k) for k in clips["keypoint"]] == [3, 3, 4]
    # clip 2 of 0002-L is frames 4..6 of the video
    assert clips[1]["keypoint"][0, 0, 3, 1] == pytest.approx(fixture_value(4, 0, 3, 1), abs=1e-6)
    assert "segments" not in clips.features and "frame_labels" not in clips.features


def test_phase2_name_without_labels_is_an_unlabelled_stream(tmp_path):
    out = tmp_path / "out"
    result = convert(FIX / "skeleton_v2", out)
    assert result.returncode == 0, result.stderr
    sample = load_prepared(out, "all")[0]
    assert sample["sample_id"] == "A01N02-R" and sample["view"] == "R" and sample["label"] == -1
    assert sample["keypoint"].shape == (5, 2, 25, 3)
    assert not sample["keypoint"][4, 1].any() and sample["keypoint"][3, 1].all()
    assert "segments" not in sample


DAMAGES = {
    "reversed interval": (
        lambda r: (r / "labels" / "0291-M.txt").write_text("14,1,4,0\n27,5,3,2\n"),
        ["labels/0291-M.txt:2", "bad interval: start 5, end 3"],
    ),
    "field count": (lambda r: (r / "labels" / "0291-M.txt").write_text("14,1,4\n"), ["0291-M.txt:1", "4 comma-separated"]),
    "class range": (lambda r: (r / "labels" / "0291-M.txt").write_text("60,1,4,0\n"), ["0291-M.txt:1", "class 60"]),
    "beyond the video": (lambda r: (r / "labels" / "0291-M.txt").write_text("14,1,6,0\n"), ["0291-M.txt:1", "has 6 frames"]),
    "no label file": (lambda r: (r / "labels" / "0291-M.txt").unlink(), ["0291-M.txt", "no label file for video 0291-M"]),
    "short frame line": (
        lambda r: (r / "skeleton" / "0291-M.txt").write_text(
            "\n".join(" ".join(["0.5"] * (149 if i == 3 else 150)) for i in range(6)) + "\n"
        ),
        ["skeleton/0291-M.txt:4", "expected 150 values", "found 149"],
    ),
    "not a number": (
        lambda r: (r / "skeleton" / "0291-M.txt").write_text(" ".join(["0.5"] * 149 + ["x1"]) + "\n"),
        ["skeleton/0291-M.txt:1", "'x1' is not a number"],
    ),
    "blank line inside": (
        lambda r: (r / "skeleton" / "0291-M.txt").write_text(" ".join(["0.5"] * 150) + "\n\n" + " ".join(["0.5"] * 150)),
        ["skeleton/0291-M.txt:2", "found 0"],
    ),
    "not in the split": (
        lambda r: (r / "split" / "cross-subject.txt").write_text("Training videos: \n0002-L,\nValidataion videos: \n0291-L,\n"),
        ["cross-subject.txt", "video 0291-M is in neither list"],
    ),
}


@pytest.mark.parametrize("damage", sorted(DAMAGES))
def test_bad_input_names_file_and_line(tmp_path, damage):
    root = writable_copy(tmp_path)
    write, fragments = DAMAGES[damage]
    write(root)
    options = argparse.Namespace(
        labels=str(root / "labels"), split_file=str(root / "split" / "cross-subject.txt"), trim=False, skip_bad=False
    )
    with pytest.raises(DataFormatError) as err:
        list(PKUMMDConverter(root / "skeleton", options).samples(progress=False))
    for fragment in fragments:
        assert fragment in str(err.value)


@pytest.mark.parametrize("damage", ["reversed interval", "short frame line"])
def test_bad_input_cli_exits_2_and_leaves_nothing(tmp_path, damage):
    root = writable_copy(tmp_path)
    write, fragments = DAMAGES[damage]
    write(root)
    out = tmp_path / "out"
    result = convert(root / "skeleton", out, "--labels", root / "labels", "--split-file", root / "split" / "cross-subject.txt")
    assert_fails_cleanly(result, out, *fragments)


def test_skip_bad_lists_the_video_and_converts_the_rest(tmp_path):
    root = writable_copy(tmp_path)
    (root / "labels" / "0291-M.txt").write_text("14,1,4,0\n27,5,3,2\n")
    out = tmp_path / "out"
    result = convert(root / "skeleton", out, "--labels", root / "labels", "--skip-bad")
    assert result.returncode == 0, result.stderr
    assert "skipped:" in result.stderr and "0291-M.txt:2" in result.stderr
    assert list(load_prepared(out, "all")["sample_id"]) == ["0002-L"]
    assert len(prepared_info(out)["bad_items"]) == 1


def test_option_errors(tmp_path):
    out = tmp_path / "out"
    assert_fails_cleanly(convert(FIX / "skeleton", out, "--trim"), out, "--trim", "--labels")
    assert_fails_cleanly(convert(FIX / "skeleton", out, "--labels", tmp_path / "nowhere"), out, "nowhere")
    assert_fails_cleanly(convert(FIX / "split", out), out, "no input found")  # no file named like a video


# ---- real data (skipped without ../shared/data) -----------------------------------------------------------------
def test_real_actions_xlsx_is_the_label_set():
    root = real_data("PKU-MMD_v1_subset")
    names = read_pku_actions(root / "split" / "Actions.xlsx")
    assert len(names) == 51 and names[0] == "bow" and names[11] == "giving something to other person"
    assert names == load_label_set("pku_mmd51")


def test_real_label_files_counts_and_the_malformed_line():
    root = real_data("PKU-MMD_v1_subset")
    files = sorted((root / "labels").glob("*.txt"))
    assert len(files) == 1076
    confidence = collections.Counter()
    rejected = []
    for path in files:
        try:
            confidence.update(i.confidence for i in read_pku_labels(path))
        except DataFormatError as e:
            rejected.append((path.name, e.line, str(e)))
    assert [(name, line) for name, line, _ in rejected] == [("0043-L.txt", 21)]
    assert "start 4925, end 4036" in rejected[0][2]
    # The catalog's totals include the rejected file: add its raw lines to reach them.
    raw = [line.split(",") for line in (root / "labels" / "0043-L.txt").read_text().split()]
    confidence.update(int(fields[3]) for fields in raw)
    assert sum(confidence.values()) == 21545
    assert (confidence[2], confidence[1], confidence[0]) == (20887, 523, 135)


def test_real_split_files():
    root = real_data("PKU-MMD_v1_subset")
    xsub = read_pku_split(root / "split" / "cross-subject.txt")
    assert (len(xsub["train"]), len(xsub["test"])) == (944, 132)
    assert sorted({v[:4] for v in xsub["test"]}) == [f"{i:04d}" for i in range(291, 335)]
    assert {v[-1] for v in xsub["test"]} == {"L", "M", "R"}
    xview = read_pku_split(root / "split" / "cross-view.txt")
    assert (len(xview["train"]), len(xview["test"])) == (717, 359)
    assert {v[-1] for v in xview["train"]} == {"L", "R"} and {v[-1] for v in xview["test"]} == {"M"}


@pytest.mark.parametrize(
    "folder, split, files, frames, instances",
    [("skeleton_train", "train", 10, 16783, 79), ("skeleton_test", "test", 6, 12761, 51)],
)
def test_real_skeletons_untrimmed(tmp_path, folder, split, files, frames, instances):
    root = real_data("PKU-MMD_v1_subset")
    out = tmp_path / "out"
    result = convert(
        root / folder, out, "--labels", root / "labels", "--split-file", root / "split" / "cross-subject.txt"
    )
    assert result.returncode == 0, result.stderr
    data = load_prepared(out)
    assert list(data) == [split]  # folder names follow the cross-subject split
    part = data[split]
    assert len(part) == files
    assert sum(len(k) for k in part["keypoint"]) == frames
    segments = [s for video in part["segments"] for s in video]
    assert len(segments) == instances
    assert {int(s["label"]) + 1 for s in segments} <= {12, 14, 16, 18, 21, 24, 26, 27}
    for sample in part:  # frame_labels and segments describe the same frames
        labels = np.full(len(sample["keypoint"]), -1)
        for s in sample["segments"]:
            labels[int(s["start"]) : int(s["end"])] = int(s["label"])
        assert (labels == sample["frame_labels"]).all()


def test_real_skeletons_cover_eight_classes_and_trim(tmp_path):
    root = real_data("PKU-MMD_v1_subset")
    classes = set()
    for folder in ("skeleton_train", "skeleton_test"):
        for path in sorted((root / folder).glob("*.txt")):
            classes |= {i.action for i in read_pku_labels(root / "labels" / path.name)}
    assert sorted(classes) == [12, 14, 16, 18, 21, 24, 26, 27]
    out = tmp_path / "clips"
    result = convert(root / "skeleton_test", out, "--labels", root / "labels", "--trim")
    assert result.returncode == 0, result.stderr
    clips = load_prepared(out, "all")
    assert len(clips) == 51
    first = read_pku_labels(root / "labels" / "0299-L.txt")[0]
    assert clips[0]["sample_id"] == "0299-L_001" and int(clips[0]["label"]) == first.action - 1
    assert len(clips[0]["keypoint"]) == first.end - first.start + 1
    video = read_pku_skeleton(root / "skeleton_test" / "0299-L.txt")
    np.testing.assert_array_equal(clips[0]["keypoint"], video[first.start : first.end + 1])


def test_real_phase2_sample(tmp_path):
    root = real_data("PKU-MMD_v2_sample")
    out = tmp_path / "out"
    result = convert(root, out)  # the folder also holds README.txt
    assert result.returncode == 0, result.stderr
    sample = load_prepared(out, "all")[0]
    assert sample["sample_id"] == "A10N08-L" and sample["label"] == -1 and sample["view"] == "L"
    keypoint = sample["keypoint"]
    assert keypoint.shape == (1040, 2, 25, 3)
    assert int((~keypoint[:, 1].reshape(1040, -1).any(axis=1)).sum()) == 312
