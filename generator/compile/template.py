"""Laying a module out: Jinja2 and its template cache, loaded only by a build (``emit.render_module``).

The compiled template is kept between runs beside the parser (``lang.parse.cache_dir``, with its
rules: ours and private, else not read; any failure means compiling it afresh). Jinja checks the
template's checksum and Python's version; the file name holds Jinja's version. Old files are pruned
as the parser's are (``lang.parse.prune``).
"""

from __future__ import annotations

from functools import cache

import jinja2

from ..lang.files import atomic_write
from ..lang.parse import _private, _read_private, cache_dir, mark_used, prune


def render(name: str, parts: dict) -> str:
    return _env().get_template(name).render(**parts)


@cache  # one per process: Jinja compiles a template once per Environment (~25 ms each)
def _env() -> jinja2.Environment:
    loader = jinja2.PackageLoader("cardgen.compile", "templates")
    return jinja2.Environment(loader=loader, trim_blocks=True, lstrip_blocks=True,
                              keep_trailing_newline=True, autoescape=False, bytecode_cache=_TemplateCache())


class _TemplateCache(jinja2.BytecodeCache):
    def _file(self, bucket: jinja2.bccache.Bucket):
        folder = cache_dir()
        return None if folder is None else folder / f"template-{jinja2.__version__}-{bucket.key[:32]}.jinja"

    def load_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        path = self._file(bucket)
        data = _read_private(path) if path is not None else None
        if data is not None:
            bucket.bytecode_from_string(data)  # a wrong magic or checksum leaves the bucket empty
            if bucket.code is not None:
                mark_used(path)

    def dump_bytecode(self, bucket: jinja2.bccache.Bucket) -> None:
        path = self._file(bucket)
        if path is None:
            return
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            if _private(path.parent):
                atomic_write(path, bucket.bytecode_to_string(), 0o600)
                prune(path.parent, "template-*.jinja", path)
        except OSError:
            pass  # a read-only home, a full disk: compile it each time
