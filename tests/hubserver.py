"""A stand-in for the Hugging Face Hub's HTTP API on 127.0.0.1, for tests that run the real huggingface_hub client.

Point a client at it with HF_ENDPOINT (read when huggingface_hub is imported, so: in a subprocess). It serves
what huggingface_hub asks for to download, list, create repos and commit, for model and dataset repos:

- GET  /api/{models,datasets}/{repo}[/revision/{rev}]       repo info (sha, siblings)
- GET  /api/{models,datasets}/{repo}/tree/{rev}[/{path}]     file listing with sizes, git and LFS ids
- HEAD/GET /[datasets/]{repo}/resolve/{rev}/{path}           a file: X-Repo-Commit, ETag, Content-Length, Range
- POST /api/repos/create, /api/validate-yaml, /api/{models,datasets}/{repo}/preupload/{rev}, .../commit/{rev}

Large files (LFS_SUFFIXES) are LFS files as on the Hub: /resolve redirects to a second server standing in for
the CDN, and X-Linked-Etag / X-Linked-Size carry their sha256 and size. Errors carry the Hub's X-Error-Code
(RepoNotFound, RevisionNotFound, EntryNotFound, GatedRepo). A gated repo lists its files to anyone but serves
them only with a known token. Uploads are taken as regular files (inline base64 in the commit); the LFS and Xet
upload protocols are not emulated. Every request is logged in `requests`, ranged ones in `ranges`;
`interrupt_once` makes a download break off halfway, to see it resume.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

TOKEN = "hf_standin_write_token"
LFS_SUFFIXES = (".safetensors", ".parquet", ".bin")
DEFAULT_BRANCH = "main"
REPO = r"(?P<repo>[^/]+/[^/]+)"
TYPES = {"models": "model", "datasets": "dataset"}


def git_oid(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class Repo:
    repo_id: str
    repo_type: str = "model"
    gated: bool = False
    private: bool = False
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)  # sha → files, oldest first
    head: str = ""

    @property
    def files(self) -> dict[str, bytes]:
        return self.commits[self.head]

    def commit(self, files: dict[str, bytes], message: str) -> str:
        digest = hashlib.sha1(f"{self.head}\n{message}\n".encode())
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + files[path])
        self.head = digest.hexdigest()
        self.commits[self.head] = dict(files)
        return self.head

    def snapshot(self, revision: str) -> dict[str, bytes] | None:
        revision = unquote(revision)
        return self.files if revision == DEFAULT_BRANCH else self.commits.get(revision)


class HubStandIn:
    """The Hub (and its CDN) on two local ports; `with HubStandIn() as hub:` runs both."""

    def __init__(self, tokens: frozenset[str] = frozenset({TOKEN})) -> None:
        self.tokens = tokens
        self.repos: dict[tuple[str, str], Repo] = {}
        self.requests: list[tuple[str, str]] = []
        self.unknown: list[tuple[str, str]] = []  # requests no route answers: a gap in the stand-in
        self.ranges: list[tuple[str, str]] = []  # (path, Range header) of every ranged request
        self.interrupted: set[bytes] = set()  # contents whose next GET breaks off halfway
        self.lock = threading.Lock()
        self.hub = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=False))
        self.cdn = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self, cdn=True))
        self.blobs: dict[str, bytes] = {}  # sha256 → content, what the CDN serves

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.hub.server_address[1]}"

    @property
    def cdn_url(self) -> str:
        return f"http://127.0.0.1:{self.cdn.server_address[1]}"

    def add(self, repo_id: str, files: dict[str, bytes] | Path, repo_type: str = "model", gated: bool = False) -> Repo:
        """A repo with one commit of `files` (a mapping, or every file under a folder)."""
        if isinstance(files, Path):
            files = {p.relative_to(files).as_posix(): p.read_bytes() for p in sorted(files.rglob("*")) if p.is_file()}
        repo = Repo(repo_id, repo_type, gated=gated)
        self._store(repo, files, "initial commit")
        self.repos[(repo_type, repo_id)] = repo
        return repo

    def _store(self, repo: Repo, files: dict[str, bytes], message: str) -> str:
        for data in files.values():
            self.blobs[sha256(data)] = data
        return repo.commit(files, message)

    def start(self) -> HubStandIn:
        for server in (self.hub, self.cdn):
            threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        for server in (self.hub, self.cdn):
            server.shutdown()
            server.server_close()

    def __enter__(self) -> HubStandIn:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def interrupt_once(self, data: bytes) -> None:
        """The next GET of this content sends half of it and drops the connection, as a flaky network would."""
        self.interrupted.add(data)


def _handler(hub: HubStandIn, cdn: bool) -> type[BaseHTTPRequestHandler]:
    class Handler(_HubHandler):
        pass

    Handler.hub, Handler.is_cdn = hub, cdn
    return Handler


class _HubHandler(BaseHTTPRequestHandler):
    hub: HubStandIn
    is_cdn: bool
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: object) -> None:  # quiet: tests read `hub.requests` instead
        pass

    # -- plumbing ---------------------------------------------------------------------------------

    def do_HEAD(self) -> None:
        self._dispatch("HEAD")

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def _dispatch(self, method: str) -> None:
        url = urlsplit(self.path)
        self.query = parse_qs(url.query)
        self.body = self.rfile.read(int(self.headers.get("Content-Length") or 0)) if method == "POST" else b""
        with self.hub.lock:
            self.hub.requests.append((method, url.path))
        routes = _CDN_ROUTES if self.is_cdn else _ROUTES
        for route_method, pattern, action in routes:
            match = re.fullmatch(pattern, url.path)
            if match and (route_method == method or (route_method == "GET" and method == "HEAD")):
                with self.hub.lock:
                    action(self, method, **match.groupdict())
                return
        self.hub.unknown.append((method, url.path))
        self._error(404, "UnknownRoute", f"no route for {method} {url.path}")

    def _send(self, status: int, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
        """A response with its Content-Length; the body is left out for HEAD, as HTTP wants."""
        self.send_response(status)
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, data: object, status: int = 200, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps(data).encode(), {"Content-Type": "application/json", **(headers or {})})

    def _error(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        extra = {"X-Error-Code": code, "X-Error-Message": message, **(headers or {})}
        self._json({"error": message}, status, extra)

    def _flag(self, name: str) -> bool:
        return self.query.get(name, [""])[0].lower() in ("true", "1")

    def _authorized(self) -> bool:
        token = self.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        return token in self.hub.tokens

    def _repo(self, kind: str | None, repo: str) -> Repo | None:
        found = self.hub.repos.get((TYPES.get(kind or "models", "model"), repo))
        if found is None or (found.private and not self._authorized()):
            self._error(404, "RepoNotFound", "Repository not found")
            return None
        return found

    def _snapshot(self, repo: Repo, rev: str) -> dict[str, bytes] | None:
        files = repo.snapshot(rev)
        if files is None:
            self._error(404, "RevisionNotFound", f"Invalid rev id: {unquote(rev)}")
        return files

    # -- reading --------------------------------------------------------------------------------

    def info(self, method: str, kind: str, repo: str, rev: str | None = None) -> None:
        found = self._repo(kind, repo)
        if found is None or (files := self._snapshot(found, rev or DEFAULT_BRANCH)) is None:
            return
        sha = found.head if not rev or unquote(rev) == DEFAULT_BRANCH else unquote(rev)
        blobs = self._flag("blobs")
        siblings = [{"rfilename": p, **(self._entry(p, d) if blobs else {})} for p, d in sorted(files.items())]
        self._json(
            {
                "_id": sha[:24],
                "id": found.repo_id,
                "sha": sha,
                "private": found.private,
                "gated": "manual" if found.gated else False,
                "disabled": False,
                "tags": [],
                "siblings": siblings,
                "lastModified": "2025-01-01T00:00:00.000Z",
                "createdAt": "2025-01-01T00:00:00.000Z",
            }
        )

    @staticmethod
    def _entry(path: str, data: bytes) -> dict[str, object]:
        entry: dict[str, object] = {"size": len(data), "blobId": git_oid(data)}
        if path.endswith(LFS_SUFFIXES):
            entry["lfs"] = {"sha256": sha256(data), "size": len(data), "pointerSize": 134}
        return entry

    def tree(self, method: str, kind: str, repo: str, rev: str, path: str | None = None) -> None:
        found = self._repo(kind, repo)
        if found is None or (files := self._snapshot(found, rev)) is None:
            return
        prefix = f"{unquote(path).strip('/')}/" if path else ""
        recursive = self._flag("recursive")
        entries: dict[str, dict[str, object]] = {}
        for file_path, data in sorted(files.items()):
            if not file_path.startswith(prefix):
                continue
            rest = file_path[len(prefix) :].split("/")
            for depth in range(1, len(rest)):  # the folders on the way
                folder = prefix + "/".join(rest[:depth])
                entries.setdefault(folder, {"type": "directory", "oid": git_oid(folder.encode()), "path": folder})
                if not recursive:
                    break
            if recursive or len(rest) == 1:
                entry = {"type": "file", "oid": git_oid(data), "size": len(data), "path": file_path}
                if file_path.endswith(LFS_SUFFIXES):
                    entry["lfs"] = {"oid": sha256(data), "size": len(data), "pointerSize": 134}
                entries[file_path] = entry
        if prefix and not entries:
            self._error(404, "EntryNotFound", f"{prefix} does not exist on {rev}")
            return
        self._json(list(entries.values()))

    def resolve(self, method: str, repo: str, rev: str, path: str, kind: str | None = None) -> None:
        found = self._repo(kind, repo)
        if found is None or (files := self._snapshot(found, rev)) is None:
            return
        sha = found.head if unquote(rev) == DEFAULT_BRANCH else unquote(rev)
        commit = {"X-Repo-Commit": sha}
        if found.gated and not self._authorized():
            status = 403 if self.headers.get("Authorization") else 401
            self._error(status, "GatedRepo", f"Access to {found.repo_id} is restricted and you are not in the list")
            return
        path = unquote(path)
        if path not in files:
            self._error(404, "EntryNotFound", f"{path} does not exist on {rev}", commit)
            return
        data = files[path]
        if path.endswith(LFS_SUFFIXES):  # LFS: metadata here, content from the CDN
            digest = sha256(data)
            headers = {
                **commit,
                "Location": f"{self.hub.cdn_url}/blobs/{digest}",
                "X-Linked-Etag": f'"{digest}"',
                "X-Linked-Size": str(len(data)),
                "ETag": f'"{git_oid(data)}"',
            }
            self._send(302, headers=headers)
            return
        self._content(method, data, {**commit, "ETag": f'"{git_oid(data)}"'})

    def blob(self, method: str, digest: str) -> None:
        if digest not in self.hub.blobs:
            self._send(404)
            return
        self._content(method, self.hub.blobs[digest], {"ETag": f'"{digest}"'})

    def _content(self, method: str, data: bytes, headers: dict[str, str]) -> None:
        """The bytes, or the part a `Range: bytes=START-[END]` header asks for (how downloads resume)."""
        headers = {**headers, "Accept-Ranges": "bytes", "Content-Type": "application/octet-stream"}
        if self.command == "GET" and data in self.hub.interrupted:
            self.hub.interrupted.discard(data)
            self.send_response(200)
            for key, value in {**headers, "Content-Length": str(len(data))}.items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.close_connection = True
            return
        if "Range" in self.headers:
            self.hub.ranges.append((urlsplit(self.path).path, self.headers["Range"]))
        wanted = re.fullmatch(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        if wanted is None:
            self._send(200, data, headers)
            return
        start, end = int(wanted[1]), int(wanted[2]) if wanted[2] else len(data) - 1
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        self._send(206, data[start : end + 1], headers)

    # -- writing --------------------------------------------------------------------------------

    def _writer(self) -> bool:
        if not self._authorized():
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return False
        return True

    def create(self, method: str) -> None:
        if not self._writer():
            return
        payload = json.loads(self.body or b"{}")
        repo_id = f"{payload['organization']}/{payload['name']}" if payload.get("organization") else payload["name"]
        repo_type = payload.get("type") or "model"
        prefix = "" if repo_type == "model" else f"{repo_type}s/"
        url = f"{self.hub.url}/{prefix}{repo_id}"
        if (repo_type, repo_id) in self.hub.repos:
            self._json({"error": "You already created this repo", "url": url}, 409)
            return
        repo = Repo(repo_id, repo_type, private=bool(payload.get("private") or payload.get("visibility") == "private"))
        self.hub._store(repo, {".gitattributes": b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n"}, "init")
        self.hub.repos[(repo_type, repo_id)] = repo
        self._json({"url": url, "name": repo_id, "id": repo.head[:24]})

    def validate_yaml(self, method: str) -> None:
        self._json({"errors": [], "warnings": []})

    def preupload(self, method: str, kind: str, repo: str, rev: str) -> None:
        if not self._writer() or (found := self._repo(kind, repo)) is None:
            return
        files = found.files
        answer = [
            {
                "path": entry["path"],
                "uploadMode": "regular",
                "shouldIgnore": False,
                "oid": git_oid(files[entry["path"]]) if entry["path"] in files else None,
            }
            for entry in json.loads(self.body)["files"]
        ]
        self._json({"files": answer, "commitOid": found.head})

    def commit(self, method: str, kind: str, repo: str, rev: str) -> None:
        if not self._writer() or (found := self._repo(kind, repo)) is None:
            return
        if unquote(rev) != DEFAULT_BRANCH:
            self._error(404, "RevisionNotFound", f"the stand-in commits to {DEFAULT_BRANCH} only, not {rev}")
            return
        files, message = dict(found.files), "commit"
        for line in self.body.splitlines():
            item = json.loads(line)
            key, value = item["key"], item["value"]
            if key == "header":
                message = value.get("summary") or message
            elif key == "file":
                files[value["path"]] = base64.b64decode(value["content"])
            elif key == "deletedFile":
                files.pop(value["path"], None)
            elif key == "deletedFolder":
                files = {p: d for p, d in files.items() if not p.startswith(value["path"].rstrip("/") + "/")}
            else:
                self._error(400, "BadRequest", f"the stand-in takes regular files only, not {key}")
                return
        sha = self.hub._store(found, files, message)
        prefix = "" if found.repo_type == "model" else f"{found.repo_type}s/"
        self._json({"commitUrl": f"{self.hub.url}/{prefix}{found.repo_id}/commit/{sha}", "commitOid": sha})


_KIND = r"(?P<kind>models|datasets)"
_ROUTES = [
    ("GET", rf"/api/{_KIND}/{REPO}(?:/revision/(?P<rev>[^/]+))?", _HubHandler.info),
    ("GET", rf"/api/{_KIND}/{REPO}/tree/(?P<rev>[^/]+)(?:/(?P<path>.+))?", _HubHandler.tree),
    ("GET", rf"/(?:(?P<kind>datasets)/)?{REPO}/resolve/(?P<rev>[^/]+)/(?P<path>.+)", _HubHandler.resolve),
    ("POST", r"/api/repos/create", _HubHandler.create),
    ("POST", r"/api/validate-yaml", _HubHandler.validate_yaml),
    ("POST", rf"/api/{_KIND}/{REPO}/preupload/(?P<rev>[^/]+)", _HubHandler.preupload),
    ("POST", rf"/api/{_KIND}/{REPO}/commit/(?P<rev>[^/]+)", _HubHandler.commit),
]
_CDN_ROUTES = [("GET", r"/blobs/(?P<digest>[0-9a-f]{64})", _HubHandler.blob)]
