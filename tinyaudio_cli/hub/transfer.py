"""The Hugging Face Hub side of tinyaudio: fetch models and eval sets for offline use, export and push models.

- `download_model` fetches a checkpoint repo and the parts of its base repos tinyaudio reads (HUB_PATTERNS),
  into the Hub cache where `load_model` finds them offline, or into a local folder.
- `download_dataset` fetches one split of an eval set (and its card), where `evaldata` looks for it.
- `export_model` writes a self-contained, Hub-ready folder: the published layout, a model card, and the
  Python files that make `transformers.pipeline(..., trust_remote_code=True)` work (model/'s, copied verbatim).
- `push_to_hub` creates the repo if needed and uploads a folder.

Every Hub failure becomes a TinyAudioError with one clear line; nothing here prints.
"""

from __future__ import annotations

import ast
import errno
import fnmatch
import importlib.util
import json
import os
import re
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from .. import __version__
from ..constants import BASES_ENV, DEFAULT_MODEL
from ..errors import TinyAudioError, UsageError

if TYPE_CHECKING:
    from huggingface_hub import HfApi
    from huggingface_hub.hf_api import RepoFile

    from ..model.config import TinyAudioConfig

PACKAGE = "tinyaudio_cli"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
BASES_SUBFOLDER = "bases"  # where --local-dir puts the base repos, one folder each
# the exported code: model/hf_pipeline.py and the model/ modules it imports, copied verbatim
REMOTE_ENTRY = "hf_pipeline"
CODE_REF_FILES = ("tokenizer_config.json", "preprocessor_config.json")  # configs that may name a checkpoint's code
ASR_TASK = "automatic-speech-recognition"
AUTO_MODEL_CLASS = "AutoModelForSpeechSeq2Seq"
CARD_TAGS = ["tinyaudio", "tiny-audio", "speech-recognition", "asr", "audio", "whisper", "mosa-projector"]
DEFAULT_LICENSE = "mit"
HUB_ID = re.compile(r"[\w.-]+/[\w.-]+")
Listing = tuple[str, "list[RepoFile]"]  # a commit and the files in it


# -- records ------------------------------------------------------------------------------------


@dataclass
class FilePlan:
    path: str
    size: int
    cached: bool


@dataclass
class RepoPlan:
    """One repository's files to fetch: `role` is the HUB_PATTERNS kind, or "dataset"."""

    repo_id: str
    role: str
    repo_type: str
    revision: str
    commit: str
    files: list[FilePlan]
    location: Path | None = None  # the snapshot (or local) folder, once fetched

    @property
    def size(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def fetch_size(self) -> int:
        return sum(f.size for f in self.files if not f.cached)


@dataclass
class DownloadPlan:
    """What `download` fetched (or, with dry_run, would fetch)."""

    repos: list[RepoPlan]
    dry_run: bool
    skipped: dict[str, str] = field(default_factory=dict)  # base id → why it needs no download
    bases_env: str | None = None  # TINYAUDIO_BASES value for bases fetched into a --local-dir
    checkpoint_dir: Path | None = None  # a checkpoint that was local (or shipped) already

    @property
    def size(self) -> int:
        return sum(repo.size for repo in self.repos)

    @property
    def fetch_size(self) -> int:
        return sum(repo.fetch_size for repo in self.repos)

    @property
    def file_count(self) -> int:
        return sum(len(repo.files) for repo in self.repos)


@dataclass
class EvalSummary:
    """The headline of an `eval` run's summary.json, as a model card reports it."""

    dataset: str  # Hub id when the set came from the Hub, else its name
    dataset_name: str
    config: str | None
    split: str | None
    samples: int | None
    wer: float  # fractions, as summary.json holds them
    cer: float | None
    model: str = "unknown"  # the model as eval named it
    weights_sha256: str | None = None  # of the weights it scored (summaries of older versions lack it)


@dataclass
class ExportResult:
    folder: Path
    files: list[tuple[str, int]]
    warnings: list[str]
    url: str | None = None


# -- errors -------------------------------------------------------------------------------------


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Network failures as the installed huggingface_hub's HTTP client raises them (requests, httpx or httpx2)."""
    found: list[type[BaseException]] = []
    for module, names in (("httpx2", ("TransportError",)), ("httpx", ("TransportError",))):
        if importlib.util.find_spec(module) is not None:
            imported = importlib.import_module(module)
            found += [getattr(imported, name) for name in names]
    if importlib.util.find_spec("requests") is not None:
        import requests

        found += [requests.ConnectionError, requests.Timeout]
    return tuple(found)


@contextmanager
def hub_errors(repo_id: str, repo_type: str = "model", revision: str | None = None) -> Iterator[None]:
    """Turn what huggingface_hub raises for `repo_id` into one clear TinyAudioError."""
    from huggingface_hub import constants
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        HFValidationError,
        LocalEntryNotFoundError,
        LocalTokenNotFoundError,
        OfflineModeIsEnabled,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{constants.ENDPOINT}/{'datasets/' if repo_type == 'dataset' else ''}{repo_id}"
    try:
        yield
    except TinyAudioError:
        raise
    except GatedRepoError as error:  # before RepositoryNotFoundError, its parent
        raise TinyAudioError(
            f"{repo_type} {repo_id} is gated: it needs a token of an account that accepted its conditions",
            hint=f"accept them at {page}, then pass --token or set HF_TOKEN",
        ) from error
    except RepositoryNotFoundError as error:
        raise TinyAudioError(
            f"{repo_type} {repo_id} was not found on the Hub ({constants.ENDPOINT})",
            hint="check the id; a private repo needs --token or HF_TOKEN",
        ) from error
    except RevisionNotFoundError as error:
        raise TinyAudioError(f"{repo_type} {repo_id} has no revision {revision!r}") from error
    except HFValidationError as error:
        raise TinyAudioError(f"{repo_id!r} is not a valid Hub id", hint="write it as owner/name") from error
    except LocalTokenNotFoundError as error:
        raise TinyAudioError(
            f"a Hugging Face token is needed for {repo_id}", hint="pass --token, set HF_TOKEN or run `hf auth login`"
        ) from error
    except (OfflineModeIsEnabled, LocalEntryNotFoundError, *_transport_errors()) as error:
        raise TinyAudioError(
            f"cannot reach the Hugging Face Hub at {constants.ENDPOINT} for {repo_id} ({type(error).__name__})",
            hint="check the network connection, proxy and HF_ENDPOINT",
        ) from error
    except HfHubHTTPError as error:
        status = error.response.status_code if error.response is not None else "?"
        hint = "pass --token (or set HF_TOKEN) with write access" if status in (401, 403) else None
        detail = (error.server_message or str(error)).splitlines()[0]
        raise TinyAudioError(f"the Hub refused the request for {repo_id} (HTTP {status}: {detail})", hint) from error
    except OSError as error:
        if error.errno != errno.ENOSPC:
            raise
        raise TinyAudioError(
            f"disk full while writing {repo_id} ({error.filename or 'the Hub cache'})",
            hint="free some space, or fetch elsewhere with --cache-dir or --local-dir",
        ) from error


def _require_online(repo_id: str) -> None:
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE:
        raise TinyAudioError(
            f"cannot download {repo_id}: HF_HUB_OFFLINE is set",
            hint="unset HF_HUB_OFFLINE (or set it to 0) on a machine that reaches the Hub",
        )


# -- download -----------------------------------------------------------------------------------


def is_hub_id(name: str) -> bool:
    """`owner/name` that is not also a local path (tinyaudio tries local folders first)."""
    return bool(HUB_ID.fullmatch(name)) and not Path(name).expanduser().exists()


@dataclass
class _Fetcher:
    """What every repository of one download shares: the client, the user's filters, the target and the mode."""

    api: HfApi
    include: Sequence[str]
    exclude: Sequence[str]
    cache_dir: str | Path | None
    dry_run: bool

    def tree(self, repo_id: str, repo_type: str, revision: str | None) -> Listing:
        """The commit a revision points to and every file in it, with sizes (nothing is downloaded)."""
        from huggingface_hub.hf_api import RepoFile

        _require_online(repo_id)
        with hub_errors(repo_id, repo_type, revision):
            info = self.api.repo_info(repo_id, repo_type=repo_type, revision=revision)
            tree = self.api.list_repo_tree(repo_id, recursive=True, revision=info.sha, repo_type=repo_type)
            return str(info.sha), [entry for entry in tree if isinstance(entry, RepoFile)]

    def plan(
        self,
        repo_id: str,
        role: str,
        repo_type: str,
        revision: str | None,
        listing: Listing,
        wanted: list[str],
        local_dir: Path | None,
    ) -> RepoPlan:
        """The wanted files narrowed by --include/--exclude, each with its size and whether it is here already."""
        from huggingface_hub import try_to_load_from_cache
        from huggingface_hub.utils import filter_repo_objects

        commit, tree = listing
        sizes = {entry.path: int(entry.size) for entry in tree}
        include, exclude = list(self.include) or None, list(self.exclude) or None
        paths = sorted(filter_repo_objects(wanted, allow_patterns=include, ignore_patterns=exclude))

        def cached(path: str) -> bool:
            if local_dir is not None:
                target = local_dir / path
                return target.is_file() and target.stat().st_size == sizes[path]
            found = try_to_load_from_cache(repo_id, path, self.cache_dir, revision=commit, repo_type=repo_type)
            return isinstance(found, str)

        files = [FilePlan(path, sizes[path], cached(path)) for path in paths]
        return RepoPlan(repo_id, role, repo_type, revision or "main", commit, files)

    def model_repo(self, repo_id: str, role: str, revision: str | None, local_dir: Path | None) -> RepoPlan:
        """A model repo's files of one HUB_PATTERNS kind, fetched with snapshot_download (parallel, resumable)."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.utils import filter_repo_objects

        from ..model.loading import HUB_PATTERNS

        listing = self.tree(repo_id, "model", revision)
        wanted = list(filter_repo_objects([entry.path for entry in listing[1]], allow_patterns=HUB_PATTERNS[role]))
        plan = self.plan(repo_id, role, "model", revision, listing, wanted, local_dir)
        if self.dry_run or not plan.files:
            return plan
        with hub_errors(repo_id, "model", revision):
            # exact names: what is fetched is what was planned. The snapshot also records the repo's file list,
            # against which an offline load_model (same HUB_PATTERNS) checks that nothing is missing.
            folder = snapshot_download(
                repo_id,
                revision=revision,
                cache_dir=self.cache_dir,
                local_dir=local_dir,
                token=self.api.token,
                allow_patterns=[_glob_escape(f.path) for f in plan.files],
            )
        plan.location = Path(folder)
        return plan

    def dataset_repo(
        self, repo_id: str, revision: str | None, wanted: list[str], listing: Listing, local_dir: Path | None
    ) -> RepoPlan:
        """Dataset files one by one: a snapshot_download would record the whole repo's file list, and the
        offline lookup of evaldata (`cached_snapshot`) would then call a one-split copy incomplete."""
        from huggingface_hub import hf_hub_download

        plan = self.plan(repo_id, "dataset", "dataset", revision, listing, wanted, local_dir)
        if self.dry_run or not plan.files:
            return plan
        with hub_errors(repo_id, "dataset", revision):
            for file in plan.files:
                path = hf_hub_download(
                    repo_id,
                    file.path,
                    repo_type="dataset",
                    revision=revision,
                    cache_dir=self.cache_dir,
                    local_dir=local_dir,
                    token=self.api.token,
                )
        # the folder the last file's path is relative to: the snapshot (or local_dir)
        plan.location = Path(path).parents[len(PurePosixPath(plan.files[-1].path).parts) - 1]
        return plan

    def text(self, repo_id: str, repo_type: str, commit: str, filename: str, local_dir: Path | None) -> str:
        """A small file's text: from the download target if there, else through a throwaway cache."""
        from huggingface_hub import hf_hub_download, try_to_load_from_cache

        if local_dir is not None and (local_dir / filename).is_file():
            return (local_dir / filename).read_text(encoding="utf-8")
        found = try_to_load_from_cache(repo_id, filename, self.cache_dir, revision=commit, repo_type=repo_type)
        if isinstance(found, str):
            return Path(found).read_text(encoding="utf-8")
        with tempfile.TemporaryDirectory() as scratch, hub_errors(repo_id, repo_type, commit):
            path = hf_hub_download(
                repo_id, filename, repo_type=repo_type, revision=commit, cache_dir=scratch, token=self.api.token
            )
            return Path(path).read_text(encoding="utf-8")


def download_model(
    model_id: str = DEFAULT_MODEL,
    revision: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    token: str | None = None,
    dry_run: bool = False,
) -> DownloadPlan:
    """Fetch a checkpoint and the parts of its bases tinyaudio reads; with dry_run, only list them.

    `model_id` may also be a local checkpoint folder or the short name of one shipped with tinyaudio
    (`tiny-en`): then only its bases are fetched. Bases that are local
    folders or mapped by TINYAUDIO_BASES need nothing. `include`/`exclude` filter every repo's files. With
    `local_dir`, the checkpoint goes there and each base to `local_dir/bases/OWNER--NAME` (see `bases_env`).
    """
    from huggingface_hub import HfApi

    from ..model.config import TinyAudioConfig
    from ..model.loading import BUNDLED_MODELS, parse_bases

    fetcher = _Fetcher(HfApi(token=token), include, exclude, cache_dir, dry_run)
    plan = DownloadPlan([], dry_run)
    local_root = Path(local_dir).expanduser() if local_dir else None
    local = BUNDLED_MODELS.get(model_id) or Path(model_id).expanduser()
    if local.is_dir():
        plan.skipped[model_id] = "shipped with tinyaudio" if model_id in BUNDLED_MODELS else "a local folder"
        plan.checkpoint_dir = local
        config = TinyAudioConfig.from_dict(_config_dict(local))
    else:
        checkpoint = fetcher.model_repo(model_id, "checkpoint", revision, local_root)
        plan.repos.append(checkpoint)
        text = fetcher.text(model_id, "model", checkpoint.commit, CONFIG_NAME, local_root)
        config = TinyAudioConfig.from_dict(json.loads(text))
    mapped = parse_bases(os.environ.get(BASES_ENV))
    local_bases: dict[str, Path] = {}
    for role, base_id in (("audio", config.audio_model_id), ("text", config.text_model_id)):
        if base_id in mapped:
            plan.skipped[base_id] = f"mapped to {mapped[base_id]} by {BASES_ENV}"
        elif Path(base_id).expanduser().is_dir():
            plan.skipped[base_id] = "a local folder"
        elif base_id not in (repo.repo_id for repo in plan.repos):
            base_dir = local_root / BASES_SUBFOLDER / base_id.replace("/", "--") if local_root else None
            plan.repos.append(fetcher.model_repo(base_id, role, None, base_dir))
            if base_dir is not None:
                local_bases[base_id] = base_dir
    if local_bases:
        plan.bases_env = ",".join(f"{base_id}={folder}" for base_id, folder in local_bases.items())
    return plan


def _config_dict(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise TinyAudioError(f"{folder} has no {CONFIG_NAME}", hint="is it a Tiny Audio checkpoint?")
    return json.loads(path.read_text(encoding="utf-8"))


def _glob_escape(path: str) -> str:
    """A file name as a pattern that matches only itself (fnmatch reads [*] as a literal *)."""
    return re.sub(r"([*?\[])", r"[\1]", path)


# -- datasets -----------------------------------------------------------------------------------


def download_dataset(
    name: str,
    split: str | None = None,
    config: str | None = None,
    revision: str | None = None,
    include: Sequence[str] = (),
    exclude: Sequence[str] = (),
    cache_dir: str | Path | None = None,
    local_dir: str | Path | None = None,
    token: str | None = None,
    dry_run: bool = False,
) -> DownloadPlan:
    """Fetch one split of an eval set (registry name or Hub id) and its card, for `eval` offline.

    The split's files are those the card's `configs` name for it, else those in a folder named after it
    or named `<split>-*`; the default config and split are the registry's.
    """
    from huggingface_hub import HfApi

    from ..data.evaldata import check_choice, resolve_dataset

    spec = resolve_dataset(name)
    if not is_hub_id(spec.path):
        raise TinyAudioError(f"dataset {name} is the local path {spec.path}: there is nothing to download")
    config = config or spec.default_config
    split = split or spec.default_split
    check_choice(spec, "config", config, spec.configs)
    check_choice(spec, "split", split, spec.splits)
    fetcher = _Fetcher(HfApi(token=token), include, exclude, cache_dir, dry_run)
    local_root = Path(local_dir).expanduser() if local_dir else None
    listing = fetcher.tree(spec.path, "dataset", revision)
    paths = [entry.path for entry in listing[1]]
    card = fetcher.text(spec.path, "dataset", listing[0], CARD_NAME, local_root) if CARD_NAME in paths else None
    wanted = split_paths(paths, card, config, split)
    if not wanted:
        raise TinyAudioError(
            f"found no data files for split {split!r}{f' of config {config!r}' if config else ''} in {spec.path}",
            hint="check --split and --config against the dataset card",
        )
    repo = fetcher.dataset_repo(
        spec.path, revision, wanted + ([CARD_NAME] if card is not None else []), listing, local_root
    )
    return DownloadPlan([repo], dry_run)


def split_paths(paths: list[str], card: str | None, config: str | None, split: str) -> list[str]:
    """The data files of one config's split: by the card's `configs` data_files when it declares them, else by
    a folder named after the split or a file named `<split>-*` / `<split>_*` / `<split>.*` (inside a folder
    named after the config, when there is one)."""
    from ..data.evaldata import card_split_patterns
    from ..data.naming import DATA_FILE_SUFFIX

    patterns = card_split_patterns(card, config, split) if card else None
    if patterns is not None:
        return [path for path in paths if any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)]
    data = [path for path in paths if path.endswith(DATA_FILE_SUFFIX)]
    if config:
        data = [path for path in data if config in PurePosixPath(path).parts[:-1]] or data
    in_folder = [path for path in data if split in PurePosixPath(path).parts[:-1]]
    named = [path for path in data if re.match(rf"{re.escape(split)}[-_.]", PurePosixPath(path).name)]
    return in_folder or named


# -- the exported code --------------------------------------------------------------------------


def remote_code() -> dict[str, bytes]:
    """The Python files of an exported folder, by name: model/hf_pipeline.py and every model/ module it imports,
    byte for byte.

    model/ imports only itself, relatively (tests/test_layout.py), so its files work unchanged side by side in
    the exported folder: transformers copies a remote module and the modules it imports relatively into one
    package of its own, and the folder never needs tinyaudio_cli. The imports are read with `ast` to find the
    closure; the text is never edited.
    """
    folder = _model_dir()
    files: dict[str, bytes] = {}
    todo = [REMOTE_ENTRY]
    while todo:
        name = todo.pop() + ".py"
        if name in files:
            continue
        files[name] = (folder / name).read_bytes()
        for node in ast.walk(ast.parse(files[name], name)):
            if isinstance(node, ast.Import) and any(alias.name.split(".")[0] == PACKAGE for alias in node.names):
                raise ValueError(f"model/{name} line {node.lineno}: import model/ modules relatively")
            if not isinstance(node, ast.ImportFrom) or not (node.level or (node.module or "").startswith(PACKAGE)):
                continue
            # only `from .module import x` resolves beside the other files once exported
            if node.level != 1 or not node.module or not (folder / f"{node.module}.py").is_file():
                raise ValueError(f"model/{name} line {node.lineno}: imports what an export cannot ship beside it")
            todo.append(node.module)
    return files


def _model_dir() -> Path:
    spec = importlib.util.find_spec(f"{PACKAGE}.model")
    assert spec is not None and spec.submodule_search_locations  # the package this module belongs to
    return Path(next(iter(spec.submodule_search_locations)))


def remote_config_entries() -> dict[str, Any]:
    """config.json keys that point transformers' Auto classes and pipeline() at the exported code."""
    from ..model import hf_pipeline

    def ref(cls: type) -> str:
        return f"{REMOTE_ENTRY}.{cls.__name__}"

    return {
        "architectures": [hf_pipeline.TinyAudioForSpeechSeq2Seq.__name__],
        "auto_map": {
            "AutoConfig": ref(hf_pipeline.TinyAudioHfConfig),
            AUTO_MODEL_CLASS: ref(hf_pipeline.TinyAudioForSpeechSeq2Seq),
        },
        "custom_pipelines": {
            ASR_TASK: {"impl": ref(hf_pipeline.TinyAudioASRPipeline), "pt": [AUTO_MODEL_CLASS], "type": "audio"}
        },
    }


# -- export and push ----------------------------------------------------------------------------


def read_eval_summary(path: str | Path) -> EvalSummary:
    """The headline of an `eval` run's summary.json (model, dataset, path, config, split, samples, wer, cer...)."""
    from ..data.evaldata import DATASETS

    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise TinyAudioError(f"cannot read eval summary {path}: {error}") from error
    if not isinstance(data, dict) or not isinstance(data.get("wer"), (int, float)):
        raise TinyAudioError(f"{path} holds no WER", hint="pass the summary.json that `tinyaudio eval` wrote")
    name = str(data.get("dataset") or data.get("path") or "unknown")
    source = str(data.get("path") or name)
    pretty = DATASETS[name].description.split(":")[0] if name in DATASETS else name
    cer = data.get("cer")
    samples = data.get("samples")
    return EvalSummary(
        dataset=source if is_hub_id(source) else name,
        dataset_name=pretty,
        config=data.get("config"),
        split=data.get("split"),
        samples=samples if isinstance(samples, int) else None,
        wer=float(data["wer"]),
        cer=float(cer) if isinstance(cer, (int, float)) else None,
        model=str(data.get("model") or "unknown"),
        weights_sha256=data["weights_sha256"] if isinstance(data.get("weights_sha256"), str) else None,
    )


def export_model(
    checkpoint: str,
    out_dir: str | Path,
    dtype: str = "float32",
    eval_summaries: Sequence[str | Path] = (),
    license: str | None = None,
    repo_id: str | None = None,
    overwrite: bool = False,
) -> ExportResult:
    """A checkpoint (any model tinyaudio loads) → a self-contained folder ready for the Hub.

    The published layout (config, projector weights in `dtype`, tokenizer and chat template, feature
    extractor and generation configs), a model card with the eval results, and the code transformers'
    pipeline runs with trust_remote_code. `repo_id` names the model in the card and its usage snippet.
    A folder that holds files is refused unless `overwrite`; then only the files an export writes are replaced.
    """
    from ..model.loading import DTYPES, load_model, resolve_model_dir, weights_sha256
    from .export_guard import check_code_files, check_out_dir, check_summaries, move_in, staging_dir, write_record

    if dtype not in DTYPES:
        raise UsageError(f"unknown dtype {dtype!r} ({', '.join(DTYPES)})")
    results = [read_eval_summary(path) for path in eval_summaries]  # before the slow part
    source = resolve_model_dir(checkpoint, "checkpoint")
    out = Path(out_dir).expanduser()
    check_out_dir(out, source, overwrite)
    code = remote_code()
    if out.is_dir():
        check_code_files(out, code)
    if results:
        check_summaries(eval_summaries, [r.weights_sha256 for r in results], [r.model for r in results], source,
                        weights_sha256(source), checkpoint)  # fmt: skip
    model = load_model(checkpoint, device="cpu", dtype=dtype)
    model.config.extra.update(remote_config_entries())
    staged = staging_dir(out)
    try:
        model.save_pretrained(staged, DTYPES[dtype])
        _drop_foreign_code_refs(staged)
        for name, content in code.items():
            (staged / name).write_bytes(content)
        write_record(staged, __version__, code)
        source_meta = _card_metadata(source / CARD_NAME)
        card = model_card(
            model.config, repo_id or out.name, license or source_meta.get("license"), results, source_meta
        )
        (staged / CARD_NAME).write_text(card, encoding="utf-8")
        written = {path.name for path in staged.iterdir()}
        kept, edited = move_in(staged, out)
    finally:
        shutil.rmtree(staged, ignore_errors=True)
    warnings = [
        f"base {base} is a local path: the export loads only where that folder exists (train on Hub ids, "
        f"mapped to local folders with {BASES_ENV}, to avoid this)"
        for base in (model.config.audio_model_id, model.config.text_model_id)
        if not HUB_ID.fullmatch(base)
    ]
    if kept:
        warnings.append(f"{out} also holds files an export does not write, left as they were: {', '.join(kept)}")
    if edited:
        warnings.append(
            f"{out} holds code an earlier export wrote that was edited since, left as it was (this export does not "
            f"use it): {', '.join(edited)}"
        )
    files = sorted((path.name, path.stat().st_size) for path in out.iterdir() if path.name in written)
    return ExportResult(out, files, warnings)


def _drop_foreign_code_refs(out: Path) -> None:
    """Remove references to code the source checkpoint shipped (e.g. the reference's ASRProcessor), which the
    saved tokenizer and feature-extractor configs carry over: the export has no such files."""
    import transformers

    for name in CODE_REF_FILES:
        path = out / name
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        foreign = {"auto_map"} & set(data)
        if isinstance(data.get("processor_class"), str) and not hasattr(transformers, data["processor_class"]):
            foreign.add("processor_class")
        if foreign:
            kept = {key: value for key, value in data.items() if key not in foreign}
            path.write_text(json.dumps(kept, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _card_metadata(path: Path) -> dict[str, Any]:
    """The YAML front matter of the source checkpoint's model card, if it has one."""
    from huggingface_hub.repocard import RepoCard

    text = path.read_text(encoding="utf-8") if path.is_file() else ""
    if not text.startswith("---"):
        return {}
    return RepoCard(text, ignore_metadata_errors=True).data.to_dict()


def model_card(
    config: TinyAudioConfig, name: str, license: str | None, results: list[EvalSummary], source: dict[str, Any]
) -> str:
    """README.md: Hub metadata (license, bases, datasets, pipeline tag, tags, model-index) and a short text."""
    from huggingface_hub import EvalResult, ModelCardData

    bases = [base for base in (config.audio_model_id, config.text_model_id) if HUB_ID.fullmatch(base)]
    trained_on = source.get("datasets") or []
    trained_on = [trained_on] if isinstance(trained_on, str) else list(trained_on)
    datasets = list(dict.fromkeys(trained_on + [r.dataset for r in results if HUB_ID.fullmatch(r.dataset)]))
    evals = []
    for result in results:
        where: dict[str, Any] = dict(
            task_type=ASR_TASK,
            task_name="Speech Recognition",
            dataset_type=result.dataset,
            dataset_name=result.dataset_name,
            dataset_config=result.config,
            dataset_split=result.split,
        )
        for metric, value in (("wer", result.wer), ("cer", result.cer)):
            if value is not None:
                evals.append(
                    EvalResult(
                        **where, metric_type=metric, metric_value=_percent(value), metric_name=f"{metric.upper()} (%)"
                    )
                )
    data = ModelCardData(
        model_name=name,
        license=license or DEFAULT_LICENSE,
        base_model=bases or None,
        datasets=datasets or None,
        language=source.get("language") or ["en"],
        library_name="transformers",
        pipeline_tag=ASR_TASK,
        tags=list(dict.fromkeys([*CARD_TAGS, *(source.get("tags") or [])])),
        eval_results=evals or None,
    )
    return f"---\n{data.to_yaml()}\n---\n\n{_card_text(config, name, results)}"


def _percent(fraction: float) -> float:
    return round(100 * fraction, 2)


def _card_text(config: TinyAudioConfig, name: str, results: list[EvalSummary]) -> str:
    lines = [
        f"# {name}",
        "",
        "A [Tiny Audio](https://pypi.org/project/tinyaudio-cli/) speech recognition model: the frozen encoder of "
        f"`{config.audio_model_id}` feeds a trained MOSA projector, whose output the frozen language model "
        f"`{config.text_model_id}` reads in place of an `<audio>` token and continues with the transcript.",
        "",
        "This repository holds the projector weights, the tokenizer and chat template, the feature-extractor and "
        "generation settings, and the code for the `transformers` pipeline; the encoder and the language model "
        "are read from their own repositories.",
        "",
        "## Usage",
        "",
        "```python",
        "from transformers import pipeline",
        "",
        f'asr = pipeline("{ASR_TASK}", model="{name}", trust_remote_code=True)',
        'print(asr("speech.wav")["text"])',
        "```",
        "",
        "Or with the tinyaudio command line (`pip install tinyaudio-cli`):",
        "",
        "```bash",
        f"tinyaudio transcribe meeting.mp4 -m {name} --srt",
        f"tinyaudio download {name}   # then it also works offline",
        "```",
        "",
        "The pipeline reads audio in 30-second windows; `tinyaudio transcribe` cuts long recordings at pauses "
        "with voice activity detection, and gives the same text for a clip of up to 30 s with `--no-vad`.",
    ]
    if results:
        lines += [
            "",
            "## Results",
            "",
            "| dataset | config | split | samples | WER (%) | CER (%) |",
            "|---|---|---|---|---|---|",
        ]
        for r in results:
            cer = f"{_percent(r.cer):.2f}" if r.cer is not None else "–"
            lines.append(
                f"| {r.dataset_name} | {r.config or '–'} | {r.split or '–'} | {r.samples or '–'} "
                f"| {_percent(r.wer):.2f} | {cer} |"
            )
        lines += ["", "Measured with `tinyaudio eval` (Whisper English normalisation)."]
    lines += ["", f"_Exported with tinyaudio {__version__}._", ""]
    return "\n".join(lines)


def push_to_hub(folder: str | Path, repo_id: str, private: bool = False, token: str | None = None) -> str:
    """Create `repo_id` if it does not exist and upload `folder` to it; returns the repo's URL."""
    from huggingface_hub import HfApi

    _require_online(repo_id)
    api = HfApi(token=token)
    with hub_errors(repo_id):
        url = api.create_repo(repo_id, private=private, exist_ok=True)
        api.upload_folder(
            repo_id=repo_id, folder_path=Path(folder), commit_message=f"Upload with tinyaudio {__version__} export"
        )
    return str(url)
