"""`tinyaudio download`, `tinyaudio export` and loading from the Hub, against a local stand-in of the Hub HTTP API.

The real huggingface_hub client does every Hub call (nothing of it is patched). It reads HF_ENDPOINT and
HF_HUB_OFFLINE when imported, and this test process is offline (conftest), so the Hub runs happen in two
subprocesses, one online and one offline, each running several commands through Typer's runner (and
transformers' pipeline) and reporting them as JSON. The model is tiny and random: its text is gibberish,
and every way of running it must give the same gibberish.
"""

from __future__ import annotations

import errno
import io
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import soundfile as sf
import torch
from conftest import LOQUACIOUS_CARD
from hubserver import TOKEN, HubStandIn, sha256
from huggingface_hub.constants import DOWNLOAD_CHUNK_SIZE
from huggingface_hub.repocard import RepoCard
from huggingface_hub.utils import filter_repo_objects
from rich.filesize import decimal
from safetensors import safe_open
from tinystack import build_checkpoint
from typer.testing import CliRunner

from tinyaudio_cli.cli import app
from tinyaudio_cli.data.entries import decoded
from tinyaudio_cli.data.evaldata import DATASETS, cached_snapshot, hub_entries
from tinyaudio_cli.errors import TinyAudioError
from tinyaudio_cli.hub.transfer import hub_errors, read_eval_summary, remote_code
from tinyaudio_cli.model import load_model
from tinyaudio_cli.model.config import TinyAudioConfig
from tinyaudio_cli.model.loading import BUNDLED_MODELS, HUB_PATTERNS, weights_sha256

ROOT = Path(__file__).resolve().parents[1]
MODEL, GATED, PUSHED = "tiny/audio-model", "tiny/gated", "me/exported-asr"  # hyphens: module names survive them
BASES = {"audio": "tiny/whisper", "text": "tiny/lm"}
BUNDLED = "tiny-en"
BUNDLED_CONFIG = TinyAudioConfig.from_dict(json.loads((BUNDLED_MODELS[BUNDLED] / "config.json").read_text()))
BUNDLED_BASES = {"audio": BUNDLED_CONFIG.audio_model_id, "text": BUNDLED_CONFIG.text_model_id}
LOQUACIOUS = DATASETS["loquacious"].path
FOREIGN_MAP = {"auto_map": {"AutoProcessor": "asr_processing.ASRProcessor"}}  # code the export does not ship
BIG_FILE = "extra-weights.safetensors"  # fetched (it matches HUB_PATTERNS) but never read
JUNK = {"modeling_tinyaudio.py": b"raise SystemExit('never run')\n", "pytorch_model.bin": b"pickle", "opt.pt": b"x"}
SUMMARY = {"model": "x", "samples": 120, "wer": 0.1234, "cer": 0.0567, "dataset": "loquacious", "path": LOQUACIOUS}
SUMMARY |= {"config": "medium", "split": "test", "normalized": True}

# Runs steps in one process: ("cli", name, args, env) through Typer's runner, ("pipeline", name, model, audio)
# through transformers with tinyaudio_cli made unimportable; writes {name: result} as JSON to argv[2].
CLIENT = r"""
import json, sys, traceback
steps, results = json.loads(sys.argv[1]), {}
for kind, name, *args in steps:
    if kind == "cli":
        from typer.testing import CliRunner
        from tinyaudio_cli.cli import app
        run = CliRunner().invoke(app, args[0], env=args[1])
        results[name] = {"code": run.exit_code, "stdout": run.stdout, "stderr": run.stderr}
    else:
        saved = {key: sys.modules.pop(key) for key in list(sys.modules) if key.split(".")[0] == "tinyaudio_cli"}
        sys.modules["tinyaudio_cli"] = None  # the exported code must run without tinyaudio
        try:
            from transformers import pipeline
            asr = pipeline("automatic-speech-recognition", model=args[0], trust_remote_code=True)
            results[name] = {"code": 0, "text": asr(args[1])["text"]}
        except Exception:
            results[name] = {"code": 1, "stderr": traceback.format_exc()}
        del sys.modules["tinyaudio_cli"]
        sys.modules.update(saved)
with open(sys.argv[2], "w") as handle:
    json.dump(results, handle)
"""


def run_client(steps: list, home: Path, hub: HubStandIn, offline: bool, out: Path) -> dict[str, dict]:
    env = {key: value for key, value in os.environ.items() if not key.startswith(("HF_", "TINYAUDIO_"))}
    env |= {"HF_ENDPOINT": hub.url, "HF_HOME": str(home), "HF_HUB_OFFLINE": "1" if offline else "0"}
    env |= {"HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_DISABLE_PROGRESS_BARS": "1", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-c", CLIENT, json.dumps(steps), str(out)], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text())


def cli(name: str, *args: str | Path, env: dict[str, str] | None = None) -> list:
    return ["cli", name, [str(arg) for arg in args], env or {}]


def text_of(result: dict) -> str:
    assert result["code"] == 0, result["stderr"][-3000:]
    return result["text"] if "text" in result else json.loads(result["stdout"])["text"]


def local_bases(local_dir: Path) -> str:
    """TINYAUDIO_BASES for bases that `download --local-dir` put in their own folders."""
    return ",".join(f"{repo_id}={local_dir / 'bases' / repo_id.replace('/', '--')}" for repo_id in BASES.values())


def cached_files(cache: Path, repo_id: str, repo_type: str = "model") -> set[str]:
    """Files of the one snapshot of a repo in a Hub cache."""
    (snapshot,) = (cache / f"{repo_type}s--{repo_id.replace('/', '--')}" / "snapshots").iterdir()
    return {p.relative_to(snapshot).as_posix() for p in snapshot.rglob("*") if p.is_file()}


def wav_bytes(seconds: float) -> bytes:
    buffer = io.BytesIO()
    sf.write(buffer, np.zeros(round(seconds * 16_000), np.float32), 16_000, format="WAV")
    return buffer.getvalue()


def parquet(rows: list[dict]) -> bytes:
    buffer = io.BytesIO()
    pq.write_table(pa.Table.from_pylist(rows), buffer)
    return buffer.getvalue()


# -- the world: tiny models, a Hub holding them, and what tinyaudio makes of them locally ------------------


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A checkpoint over local bases, and its twin that names Hub bases (as published checkpoints do)."""
    root = tmp_path_factory.mktemp("hubstack")
    checkpoint = build_checkpoint(root)
    config = json.loads((checkpoint / "config.json").read_text())
    folders = {"audio": Path(config["audio_model_id"]), "text": Path(config["text_model_id"])}
    twin = root / "hub-checkpoint"
    shutil.copytree(checkpoint, twin)
    (twin / "config.json").write_text(json.dumps(config | {f"{k}_model_id": v for k, v in BASES.items()}))
    for name in ("tokenizer_config.json", "preprocessor_config.json"):  # as the reference's name its own code
        path = twin / name
        path.write_text(json.dumps(json.loads(path.read_text()) | {"processor_class": "ASRProcessor"} | FOREIGN_MAP))
    for name, data in JUNK.items():  # files tinyaudio never reads must never be fetched
        for folder in (twin, *folders.values()):
            (folder / name).write_bytes(data)
    (folders["audio"] / "normalizer.json").write_text("{}")
    # big enough that the client has written part of it when the stand-in breaks the download off
    (folders["text"] / BIG_FILE).write_bytes(os.urandom(2 * DOWNLOAD_CHUNK_SIZE + 1000))
    summary = root / "summary.json"
    summary.write_text(json.dumps(SUMMARY | {"weights_sha256": weights_sha256(checkpoint)}))
    return {"root": root, "checkpoint": checkpoint, "twin": twin, "summary": summary, **folders}


@pytest.fixture(scope="module")
def hub(stack: dict[str, Path]) -> Iterator[HubStandIn]:
    with HubStandIn() as server:
        server.add(BASES["audio"], stack["audio"])
        server.add(BASES["text"], stack["text"])
        server.add(MODEL, stack["twin"])
        for kind, repo_id in BUNDLED_BASES.items():  # tiny stand-ins under the real ids of tiny-en's bases
            server.add(repo_id, stack[kind])
        server.interrupt_once((stack["text"] / BIG_FILE).read_bytes())
        server.add(GATED, stack["twin"], gated=True)
        shard = [{"ID": f"utt-{i}", "wav": wav_bytes(0.5), "text": "hello", "duration": 0.5} for i in range(2)]
        files = {"README.md": LOQUACIOUS_CARD.encode(), "raw/audio.tar": b"not for eval"}
        files |= {f"test/test-0000{i}-of-00002.parquet": parquet(shard) for i in range(2)}
        files |= {"dev/dev-00000-of-00001.parquet": parquet(shard)}
        server.add(LOQUACIOUS, files, repo_type="dataset")
        yield server


@pytest.fixture(scope="module")
def exported(stack: dict[str, Path]) -> Path:
    """The local checkpoint exported in bfloat16 with an eval summary, in this (offline) process."""
    from tinyaudio_cli.hub.transfer import export_model

    result = export_model(str(stack["checkpoint"]), stack["root"] / "exported-model", "bfloat16", [stack["summary"]])
    assert len(result.warnings) == 2 and all("local path" in warning for warning in result.warnings)
    return result.folder


@pytest.fixture(scope="module")
def reference(stack: dict[str, Path], exported: Path, source_wav: Path) -> dict[str, str]:
    """`tinyaudio transcribe --no-vad` of the source checkpoint and of the export: the texts all others must match."""
    texts = {}
    for name, model in (("source", stack["checkpoint"]), ("exported", exported)):
        run = CliRunner().invoke(
            app, ["transcribe", str(source_wav), "--no-vad", "-m", str(model), "-o", "-", "--json"]
        )
        assert run.exit_code == 0, run.output
        texts[name] = json.loads(run.stdout)["text"]
        assert texts[name].strip()
    return texts


@pytest.fixture(scope="module")
def online(hub: HubStandIn, stack: dict[str, Path], source_wav: Path, tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("online")
    mapped = {"TINYAUDIO_BASES": f"{BASES['audio']}={stack['audio']},{BASES['text']}={stack['text']}"}
    push = ["export", stack["twin"], root / "pushed", "--eval-summary", stack["summary"], "--push-to-hub", PUSHED]
    steps = [
        cli("dry_run", "download", MODEL, "--dry-run", "--cache-dir", root / "dry-cache"),
        cli("dry_filtered", "download", MODEL, "--dry-run", "--exclude", "*.safetensors", "--include", "*.json"),
        cli("dry_local", "download", stack["twin"], "--dry-run"),
        cli("download", "download", MODEL),
        cli("bundled", "download", BUNDLED, "--cache-dir", root / "bundled-cache"),
        cli("local_dir", "download", MODEL, "--local-dir", root / "local"),
        cli("unknown", "download", "nobody/nothing"),
        cli("gated", "download", GATED, "--cache-dir", root / "gated-cache"),
        cli("gated_token", "download", GATED, "--cache-dir", root / "gated-cache", "--token", TOKEN, "-q"),
        cli("dataset", "download", "--data", "loquacious,split=test"),
        cli("dataset_alias", "download", "--dataset", "loquacious", "--split", "test", "--cache-dir", root / "alias"),
        cli("push_no_token", *push[:-1], "me/refused", env=mapped),
        cli("push", *push, "--token", TOKEN, "--overwrite", env=mapped),  # over the export push_no_token made
        ["pipeline", "hub_pipeline", PUSHED, str(source_wav)],
        cli("hub_transcribe", "transcribe", source_wav, "--no-vad", "-m", PUSHED, "-o", "-", "--json"),
    ]
    results = run_client(steps, root / "home", hub, offline=False, out=root / "results.json")
    return {"root": root, "home": root / "home", "results": results}


@pytest.fixture(scope="module")
def offline(hub: HubStandIn, online: dict, exported: Path, source_wav: Path) -> dict:
    local_run = ["transcribe", source_wav, "--no-vad", "-m", online["root"] / "local", "-o", "-", "--json"]
    steps = [
        ["pipeline", "local_pipeline", str(exported), str(source_wav)],
        cli("transcribe", "transcribe", source_wav, "--no-vad", "-m", MODEL, "-o", "-", "--json"),
        cli("missing", "transcribe", source_wav, "--no-vad", "-m", "tiny/never-downloaded"),
        cli("from_local_dir", *local_run, env={"TINYAUDIO_BASES": local_bases(online["root"] / "local")}),
        cli("download", "download", MODEL),
    ]
    return run_client(steps, online["home"], hub, offline=True, out=online["root"] / "offline.json")


# -- download ---------------------------------------------------------------------------------------------


def test_download_fetches_the_checkpoint_and_what_tinyaudio_reads_of_its_bases(online, hub, stack):
    run = online["results"]["download"]
    assert run["code"] == 0, run["stderr"]
    cache = online["home"] / "hub"
    for repo_id, kind, folder in ((MODEL, "checkpoint", stack["twin"]), *((BASES[k], k, stack[k]) for k in BASES)):
        in_repo = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        expected = set(filter_repo_objects(in_repo, allow_patterns=HUB_PATTERNS[kind]))
        assert cached_files(cache, repo_id) == expected, repo_id
        assert not expected & set(JUNK)
    assert "normalizer.json" in cached_files(cache, BASES["audio"])
    assert run["stdout"].strip().endswith(str(next((cache / "models--tiny--audio-model" / "snapshots").iterdir())))
    assert not hub.unknown, f"the stand-in lacks routes the client used: {hub.unknown}"


def test_download_of_a_shipped_model_fetches_its_bases(online, stack):
    run = online["results"]["bundled"]
    assert run["code"] == 0, run["stderr"]
    assert f"{BUNDLED}: shipped with tinyaudio" in run["stderr"].replace("\n", "")
    assert run["stdout"].strip() == str(BUNDLED_MODELS[BUNDLED])
    cache = online["root"] / "bundled-cache"
    for kind, repo_id in BUNDLED_BASES.items():
        in_repo = [p.relative_to(stack[kind]).as_posix() for p in stack[kind].rglob("*") if p.is_file()]
        assert cached_files(cache, repo_id) == set(filter_repo_objects(in_repo, allow_patterns=HUB_PATTERNS[kind]))
    assert sorted(p.name for p in cache.iterdir() if p.name.startswith("models--")) == sorted(
        f"models--{repo_id.replace('/', '--')}" for repo_id in BUNDLED_BASES.values()
    )


def test_downloaded_model_transcribes_offline(offline, reference):
    assert text_of(offline["transcribe"]) == reference["source"]


def test_interrupted_download_resumes(online, hub, stack):
    weights = (stack["text"] / BIG_FILE).read_bytes()
    cached = online["home"] / "hub" / "models--tiny--lm" / "snapshots"
    assert next(cached.iterdir()).joinpath(BIG_FILE).read_bytes() == weights
    assert not hub.interrupted  # the break happened
    starts = [
        int(span.removeprefix("bytes=").rstrip("-")) for path, span in hub.ranges if path.endswith(sha256(weights))
    ]
    assert starts and 0 < starts[0] < len(weights)


def test_local_dir_holds_the_checkpoint_and_its_bases(online, offline, reference):
    run = online["results"]["local_dir"]
    assert run["code"] == 0, run["stderr"]
    local = online["root"] / "local"
    assert (local / "model.safetensors").is_file() and (local / "bases" / "tiny--lm" / "tokenizer.json").is_file()
    assert f"TINYAUDIO_BASES={local_bases(local)}" in run["stderr"].replace("\n", "")
    assert run["stdout"].strip() == str(local)
    assert text_of(offline["from_local_dir"]) == reference["source"]


def test_dry_run_lists_files_and_sizes_and_fetches_nothing(online, stack):
    run = online["results"]["dry_run"]
    assert run["code"] == 0, run["stderr"]
    sizes = {}
    for kind, folder in (("checkpoint", stack["twin"]), ("audio", stack["audio"]), ("text", stack["text"])):
        for path in filter_repo_objects(
            [p.name for p in folder.iterdir() if p.is_file()], allow_patterns=HUB_PATTERNS[kind]
        ):
            sizes[f"{kind}/{path}"] = (folder / path).stat().st_size
    for key, size in sizes.items():
        assert key.split("/", 1)[1] in run["stdout"] and decimal(size) in run["stdout"], key
    assert f"{len(sizes)} files, {decimal(sum(sizes.values()))} in total" in run["stdout"]
    dry_cache = online["root"] / "dry-cache"
    assert not dry_cache.exists() or not [p for p in dry_cache.rglob("*") if p.is_file()]
    filtered = online["results"]["dry_filtered"]["stdout"]
    json_files = [key for key in sizes if key.endswith(".json")]
    assert f"{len(json_files)} files, {decimal(sum(sizes[key] for key in json_files))} in total" in filtered
    local = online["results"]["dry_local"]
    assert local["code"] == 0 and f"{stack['twin']}: a local folder" in local["stdout"].replace("\n", "")
    assert MODEL not in local["stdout"] and all(base in local["stdout"] for base in BASES.values())


def test_unknown_and_gated_repos_fail_with_one_clear_line(online):
    results = online["results"]
    assert results["unknown"]["code"] == 1
    assert "nobody/nothing was not found on the Hub" in results["unknown"]["stderr"]
    assert results["gated"]["code"] == 1
    assert f"{GATED} is gated" in results["gated"]["stderr"] and "--token" in results["gated"]["stderr"]
    assert results["gated_token"]["code"] == 0, results["gated_token"]["stderr"]
    for run in (results["unknown"], results["gated"]):
        assert "Traceback" not in run["stderr"] and len(run["stderr"].strip().splitlines()) == 2  # error + hint


def test_offline_errors_are_clear(offline):
    missing = offline["missing"]
    assert missing["code"] == 1
    assert "tiny/never-downloaded is not on this machine" in missing["stderr"]
    assert "tinyaudio download tiny/never-downloaded" in missing["stderr"]
    assert offline["download"]["code"] == 1
    assert "HF_HUB_OFFLINE is set" in offline["download"]["stderr"]


def test_dataset_download_fetches_one_split_where_eval_looks(online, hub):
    run = online["results"]["dataset"]
    assert run["code"] == 0, run["stderr"]
    cache = online["home"] / "hub"
    expected = {"README.md", "test/test-00000-of-00002.parquet", "test/test-00001-of-00002.parquet"}
    assert cached_files(cache, LOQUACIOUS, "dataset") == expected
    assert cached_snapshot(LOQUACIOUS, cache_dir=cache) is not None


def test_download_dataset_is_a_deprecated_spelling_of_data(online):
    """`download --dataset NAME --split S` fetches what `--data NAME,split=S` fetches, and says in one line on
    stderr that it is deprecated."""
    run = online["results"]["dataset_alias"]
    assert run["code"] == 0, run["stderr"]
    assert run["stderr"].splitlines()[0] == (
        "warning: --dataset is deprecated and will be removed in the next release; use --data NAME"
    )
    expected = cached_files(online["home"] / "hub", LOQUACIOUS, "dataset")
    assert cached_files(online["root"] / "alias", LOQUACIOUS, "dataset") == expected
    assert "warning" not in online["results"]["dataset"]["stderr"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "loquacious,audio_column=wav"], "audio_column= mean nothing to download"),
        (["--data", "loquacious,split=test", "--split", "dev"], "--split dev and split=test disagree"),
        (["--data", "loquacious", "--dataset", "loquacious"], "--data and --dataset both name a data set"),
        (["tiny-en", "--data", "loquacious"], "name a model or --data, not both"),
    ],
)
def test_download_data_mistakes_are_one_line(args: list[str], message: str) -> None:
    run = CliRunner().invoke(app, ["download", *args], env={"HF_HUB_OFFLINE": "1"})
    assert run.exit_code == 1 and message in run.stderr and "Traceback" not in run.output


def test_downloaded_split_is_read_offline(online):
    cache = online["home"] / "hub"
    samples = list(decoded(hub_entries(DATASETS["loquacious"], split="test", cache_dir=cache)))
    assert [sample.id for sample in samples] == ["utt-0", "utt-1", "utt-0", "utt-1"]


# -- export -----------------------------------------------------------------------------------------------


def test_exported_folder_loads_in_tinyaudio_with_the_same_projector(exported, stack):
    config = json.loads((exported / "config.json").read_text())
    module, _, name = config["custom_pipelines"]["automatic-speech-recognition"]["impl"].partition(".")
    assert (exported / f"{module}.py").is_file() and f"class {name}(" in (exported / f"{module}.py").read_text()
    assert set(config["auto_map"]) == {"AutoConfig", "AutoModelForSpeechSeq2Seq"}
    with safe_open(exported / "model.safetensors", "pt") as handle:
        assert {handle.get_tensor(key).dtype for key in handle.keys()} == {torch.bfloat16}  # noqa: SIM118
    source = load_model(str(stack["checkpoint"]), device="cpu", dtype="float32")
    loaded = load_model(str(exported), device="cpu", dtype="float32")
    for key, tensor in source.projector.state_dict().items():
        assert torch.equal(loaded.projector.state_dict()[key], tensor.to(torch.bfloat16).float()), key


def test_exported_pipeline_gives_the_text_of_transcribe(offline, reference):
    assert text_of(offline["local_pipeline"]) == reference["exported"]


def test_pushed_model_loads_from_the_hub_with_the_same_text(online, hub, reference):
    results = online["results"]
    assert results["push"]["code"] == 0, results["push"]["stderr"]
    pushed = online["root"] / "pushed"
    assert set(hub.repos[("model", PUSHED)].files) == {p.name for p in pushed.iterdir()} | {".gitattributes"}
    for name in ("tokenizer_config.json", "preprocessor_config.json"):
        assert not {"auto_map", "processor_class"} & set(json.loads((pushed / name).read_text())), name
    assert text_of(results["hub_pipeline"]) == reference["source"]
    assert text_of(results["hub_transcribe"]) == reference["source"]
    assert results["push_no_token"]["code"] == 1
    assert "me/refused" in results["push_no_token"]["stderr"] and "--token" in results["push_no_token"]["stderr"]
    assert ("model", "me/refused") not in hub.repos
    assert not hub.unknown, f"the stand-in lacks routes the client used: {hub.unknown}"


def test_model_card_metadata(online):
    card = RepoCard((online["root"] / "pushed" / "README.md").read_text())
    data = card.data.to_dict()
    assert data["pipeline_tag"] == "automatic-speech-recognition"
    assert data["base_model"] == [BASES["audio"], BASES["text"]]
    assert data["datasets"] == [LOQUACIOUS] and data["license"] and "tinyaudio" in data["tags"]
    (result,) = data["model-index"][0]["results"]
    assert data["model-index"][0]["name"] == PUSHED
    assert result["dataset"] == {"name": "LoquaciousSet", "type": LOQUACIOUS, "config": "medium", "split": "test"}
    assert {m["type"]: m["value"] for m in result["metrics"]} == {"wer": 12.34, "cer": 5.67}
    assert f'model="{PUSHED}"' in card.text


def test_eval_summary_is_read_tolerantly(tmp_path):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps({"wer": 0.5, "dataset": "my-clips"}))
    summary = read_eval_summary(path)
    assert (summary.dataset, summary.config, summary.cer, summary.samples) == ("my-clips", None, None, None)
    path.write_text(json.dumps({"dataset": "my-clips"}))
    with pytest.raises(TinyAudioError, match="no WER"):
        read_eval_summary(path)


def test_disk_full_is_one_clear_line():
    with pytest.raises(TinyAudioError, match=f"disk full while writing {MODEL}") as caught, hub_errors(MODEL):
        raise OSError(errno.ENOSPC, "No space left on device", "/cache/blobs/abc")
    assert "--cache-dir" in caught.value.hint


def test_exported_code_is_model_verbatim(exported):
    """The export ships model/hf_pipeline.py and the model/ files it imports, byte for byte under their own names:
    exactly the files transformers copies for it, each listed with its sha256 in the export's record."""
    from transformers.dynamic_module_utils import get_imports, get_relative_import_files

    shipped = {path.name: path.read_bytes() for path in exported.glob("*.py")}
    model_dir = ROOT / "tinyaudio_cli" / "model"
    assert "hf_pipeline.py" in shipped
    assert shipped == {name: (model_dir / name).read_bytes() for name in shipped}
    needed = {Path(path).name for path in get_relative_import_files(exported / "hf_pipeline.py")}
    assert needed | {"hf_pipeline.py"} == set(shipped)
    assert not any("tinyaudio_cli" in get_imports(exported / name) for name in shipped)
    record = json.loads((exported / "tinyaudio_export.json").read_text())
    assert record["code"] == {name: sha256(content) for name, content in shipped.items()}
    config = json.loads((exported / "config.json").read_text())
    assert config["auto_map"]["AutoModelForSpeechSeq2Seq"] == "hf_pipeline.TinyAudioForSpeechSeq2Seq"
    assert remote_code() == shipped


def test_export_refuses_a_folder_it_did_not_write(stack, tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    run = CliRunner().invoke(app, ["export", str(stack["checkpoint"]), str(tmp_path)])
    assert run.exit_code == 1 and "is not empty" in run.stderr
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_help_lists_examples_and_panels():
    for command, example, panels in (
        ("download", "tinyaudio download --data loquacious", ("Hub", "Files", "Dataset")),
        ("export", "--push-to-hub my-org/my-asr", ("Model card", "Hub")),
    ):
        run = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "120"})
        assert example in run.output and all(panel in run.output for panel in panels)
