"""Bad input of every kind: exit 2 (or 3 for the environment), one line, nothing written.

Each case runs the CLI in this process (fast, and what `llmco2` runs) from an empty working
folder holding one campaign database; afterwards no file may have appeared or changed there.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from llmco2.cli.main import run
from storage import CampaignStore
from tests.featurize.test_gpus import USER_GPU

#: A small real dataset of the repository (the evaluate cases need one to get past reading).
DATA = Path(__file__).resolve().parents[3] / "experiments" / "data" / "real-h200-moe"

CONFIG = """name: bad
database: sqlite:///campaign.db
priors:
  architectures: {models: [qwen2-0.5b]}
  gpus: {types: [H100-SXM], tp: [1, 1]}
"""


#: (case id, arguments, exit code, a phrase of the one-line message). ``{db}`` is the campaign
#: database of the working folder, ``{data}`` :data:`DATA`; files named in arguments are made by
#: :func:`_inputs`.
# fmt: off
CASES: list[tuple[str, list[str], int, str]] = [
    ("unknown model", ["predict", "qwen9-7b", "--gpu", "H200"], 2, "unknown model 'qwen9-7b'"),
    ("unknown gpu", ["predict", "qwen2-7b", "--gpu", "H900"], 2, "unknown gpu 'H900'"),
    ("binary config.json", ["predict", "binary.json", "--gpu", "H200"], 2, "not a text file"),
    ("config.json not json", ["predict", "broken.json", "--gpu", "H200"], 2, "not valid JSON"),
    ("config.json of another family", ["predict", "t5.json"], 2, "model_type 't5'"),
    ("zero batch", ["predict", "qwen2-7b", "--batch", "0"], 2, "batch"),
    ("negative prompt", ["predict", "qwen2-7b", "--prompt", "-5"], 2, "prompt"),
    ("infinite pue", ["predict", "qwen2-7b", "--pue", "inf"], 2, "PUE"),
    ("nan intensity", ["predict", "qwen2-7b", "--intensity", "nan"], 2, "carbon intensity"),
    ("unknown region", ["predict", "qwen2-7b", "--region", "xx-nowhere"], 2, "llmco2 regions"),
    (
        "region and intensity",
        ["predict", "qwen2-7b", "--region", "FRA", "--intensity", "5"],
        2,
        "not both",
    ),
    ("plot without sweep", ["predict", "qwen2-7b", "--plot", "p.png"], 2, "--sweep-gpus"),
    ("plot not png", ["predict", "qwen2-7b", "--sweep-gpus", "1,2", "--plot", "p.txt"], 2, "*.png"),
    (
        "plot is a folder",
        ["predict", "qwen2-7b", "--sweep-gpus", "1,2", "--plot", "folder"],
        2,
        "is a folder",
    ),
    ("bad sweep", ["predict", "qwen2-7b", "--sweep-gpus", "1,a"], 2, "sweep"),
    ("tp not dividing heads", ["predict", "qwen2-0.5b", "--tp", "3"], 2, "attention heads"),
    (
        "gpu file reusing an id",
        ["featurize", "qwen2-7b", "--gpu", "H200", "--gpu-file", "reuse.yaml"],
        2,
        "reuses the name 'H200'",
    ),
    ("missing checkpoint", ["predict", "qwen2-7b", "--model", "nope.pt"], 2, "nope.pt"),
    ("tampered checkpoint", ["predict", "qwen2-7b", "--model", "garbage.pt"], 2, "garbage.pt"),
    ("unknown option", ["predict", "qwen2-7b", "--colour", "red"], 2, "No such option"),
    ("missing campaign config", ["campaign", "run", "nope.yaml"], 2, "no campaign config"),
    ("duplicate yaml key", ["campaign", "run", "dup.yaml"], 2, "appears twice"),
    ("boolean count", ["campaign", "run", "bool.yaml"], 2, "not true"),
    ("budget below round 0", ["campaign", "run", "budget.yaml"], 2, "below sampling.initial"),
    ("unknown model in config", ["campaign", "run", "model.yaml"], 2, "unknown model"),
    ("unknown gpu in config", ["campaign", "run", "gpu.yaml"], 2, "unknown gpu"),
    ("tp that fits no model", ["campaign", "run", "tp.yaml"], 2, "TP 3 does not divide"),
    ("unknown config key", ["campaign", "run", "key.yaml"], 2, "unknown key 'colour'"),
    ("report is a file", ["campaign", "run", "ok.yaml", "--report", "notes.txt"], 2, "notes.txt"),
    (
        "asyncio driver",
        ["campaign", "list", "--db", "postgresql+asyncpg://u@127.0.0.1/x"],
        2,
        "asyncio driver",
    ),
    (
        "port not a number",
        ["campaign", "list", "--db", "postgresql://u:pw@h:port/x"],
        2,
        "port is not a number",
    ),
    (
        "driver not installed",
        ["campaign", "list", "--db", "postgresql+pg8000://u@127.0.0.1/x"],
        3,
        "pip install pg8000",
    ),
    (
        "server unreachable",
        ["campaign", "list", "--db", "postgresql://u@127.0.0.1:9/x"],
        3,
        "127.0.0.1",
    ),
    ("unsupported database", ["campaign", "list", "--db", "mysql://u@h/x"], 2, "unsupported"),
    (
        "missing sqlite file",
        ["campaign", "status", "x", "--db", "sqlite:///missing.db"],
        2,
        "does not exist",
    ),
    ("unknown campaign", ["campaign", "status", "nope", "--db", "{db}"], 2, "no campaign 'nope'"),
    (
        "unknown export format",
        ["export", "--campaign", "c", "--out", "o", "--format", "xml", "--db", "{db}"],
        2,
        "unknown export format",
    ),
    (
        "export of an unknown campaign",
        ["export", "--campaign", "nope", "--out", "o", "--db", "{db}"],
        2,
        "no campaign 'nope'",
    ),
    ("train into a folder", ["train", "--data", "folder", "--out", "folder"], 2, "is a folder"),
    ("train into a .txt", ["train", "--data", "folder", "--out", "model.txt"], 2, ".pt"),
    (
        "evaluate no methods",
        ["evaluate", "--data", "{data}", "--out", "ev", "--methods", ","],
        2,
        "methods",
    ),
    (
        "evaluate unknown split",
        ["evaluate", "--data", "{data}", "--out", "ev", "--splits", "moon"],
        2,
        "unknown split",
    ),
    (
        "evaluate one shape fold",
        ["evaluate", "--data", "{data}", "--out", "ev", "--shape-folds", "1"],
        2,
        "--shape-folds must be ≥ 2",
    ),
    (
        "predict beyond the context window",
        ["predict", "llama3.1-8b", "--gpu", "H200", "--prompt", "500000", "--gen", "10"],
        2,
        "exceed the context window of meta-llama/Llama-3.1-8B (131,072 tokens)",
    ),
    ("featurize unknown model", ["featurize", "qwen9"], 2, "unknown model"),
]
# fmt: on


def _inputs(folder: Path) -> None:
    (folder / "binary.json").write_bytes(bytes(range(256)) * 2)
    (folder / "broken.json").write_text('{"model_type": "llama",')
    (folder / "t5.json").write_text('{"model_type": "t5", "d_model": 512}')
    (folder / "garbage.pt").write_bytes(b"not a checkpoint" * 64)
    (folder / "reuse.yaml").write_text(USER_GPU.replace("id: RTX-6000-Ada", "id: H200"))
    (folder / "folder").mkdir()
    (folder / "notes.txt").write_text("mine")
    (folder / "ok.yaml").write_text(CONFIG)
    (folder / "dup.yaml").write_text(CONFIG + "name: again\n")
    (folder / "bool.yaml").write_text(CONFIG + "sampling: {initial: true}\n")
    (folder / "budget.yaml").write_text(CONFIG + "sampling: {initial: 60}\n"
                                        "budget: {measurements: 5}\n")  # fmt: skip
    (folder / "model.yaml").write_text(CONFIG.replace("qwen2-0.5b", "qwen9-0.5b"))
    (folder / "gpu.yaml").write_text(CONFIG.replace("H100-SXM", "H900"))
    (folder / "tp.yaml").write_text(CONFIG.replace("tp: [1, 1]", "tp: [3, 3]"))
    (folder / "key.yaml").write_text(CONFIG + "colour: green\n")
    store = CampaignStore(f"sqlite:///{folder / 'campaign.db'}")
    store.create_campaign("c", {})
    store.close()


def _snapshot(folder: Path) -> dict[str, str]:
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        if path.is_file() else "folder"
        for path in sorted(folder.rglob("*"))
        if not path.name.endswith(("-wal", "-shm"))  # SQLite's journal of a reader
    }  # fmt: skip


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bad-input")
    _inputs(folder)
    return folder


def test_there_are_at_least_thirty_kinds_of_bad_input() -> None:
    assert len({case[0] for case in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize(("argv", "code", "phrase"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])  # fmt: skip
def test_bad_input_is_one_line_and_changes_nothing(
    argv: list[str], code: int, phrase: str, workdir: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    monkeypatch.chdir(workdir)
    monkeypatch.setenv("RAY_ADDRESS", "127.0.0.1:1")  # were Ray ever reached, it would fail
    before = _snapshot(workdir)
    args = [
        a.replace("{db}", f"sqlite:///{workdir / 'campaign.db'}").replace("{data}", str(DATA))
        for a in argv
    ]
    assert run(args) == code
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1, captured.err
    assert lines[0].startswith("llmco2: error: ") and phrase in lines[0], lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert "pw@" not in captured.err  # a password is never printed
    assert _snapshot(workdir) == before


def test_a_missing_optional_package_is_exit_3_with_its_extra(
    workdir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import sys

    monkeypatch.chdir(workdir)
    monkeypatch.setitem(sys.modules, "optuna", None)  # `import optuna` now fails as if absent
    before = _snapshot(workdir)
    argv = ["train", "--data", str(DATA), "--hpo", "1", "--study-db", "sqlite:///study.db",
            "--no-interval", "--out", "m.pt"]  # fmt: skip
    assert run(argv) == 3
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pip install 'llmco2[predictor]'" in err[0], err
    assert _snapshot(workdir) == before
