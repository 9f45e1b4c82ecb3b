"""Render a report document (``dcctl.report.facts``) as HTML, PDF, Markdown or JSON, in Chinese or English.

Formatting only: one set of templates (``templates/reports/``), every word from a message catalog
(``templates/reports/messages/{zh,en}.yaml``), charts as inline SVG whose geometry is computed here and whose markup
is a template macro. PDF is the HTML printed by weasyprint with Debian's CJK fonts (imported only when asked for).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml

from dcctl.errors import DcctlError
from dcctl.templating import environment

FORMATS = ("html", "pdf", "md", "json")
LANGS = ("zh", "en")
MESSAGES_DIR = "reports/messages"


# ------------------------------------------------------------------------------------------------- catalogs
def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = str(v)
    return out


@functools.cache
def messages(lang: str) -> dict[str, str]:
    """The flat catalog of one language: ``section.estate`` → text."""
    if lang not in LANGS:
        raise DcctlError(f"no report language '{lang}'", hint=f"use one of: {', '.join(LANGS)}")
    loader = environment().loader
    assert loader is not None
    source, _, _ = loader.get_source(environment(), f"{MESSAGES_DIR}/{lang}.yaml")
    return _flatten(yaml.safe_load(source))


class Translator:
    """``t('key', name=...)`` in templates; a key missing from the catalog is an error, never a silent blank."""

    def __init__(self, lang: str) -> None:
        self.lang = lang
        self.catalog = messages(lang)

    def __call__(self, key: str, **values: Any) -> str:
        try:
            text = self.catalog[key]
        except KeyError:
            raise DcctlError(f"report message '{key}' is missing from the {self.lang} catalog") from None
        return text.format(**values) if values else text

    def has(self, key: str) -> bool:
        return key in self.catalog


# ------------------------------------------------------------------------------------------------- formatting
def duration(seconds: float | None, lang: str) -> str:
    """900 → '15 min' / '15分钟'; None → '' (the template says 'not measured')."""
    if seconds is None:
        return ""
    s = round(seconds)
    zh = lang == "zh"
    units = (("d", "天", 86400), ("h", "小时", 3600), ("min", "分钟", 60), ("s", "秒", 1))
    parts: list[str] = []
    for en, cn, size in units:
        if s >= size or (size == 1 and not parts):
            n, s = divmod(s, size)
            parts.append(f"{n}{cn}" if zh else f"{n} {en}")
        if len(parts) == 2:
            break
    return "".join(parts) if zh else " ".join(parts)


def size_bytes(n: float | None) -> str:
    if n is None:
        return ""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{value:.1f} TiB"  # pragma: no cover


def number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def compact(value: float) -> str:
    """A tick label that fits under a short axis: 2500 → '2.5k', 5000000 → '5M'."""
    for size, suffix in ((1e6, "M"), (1e3, "k")):
        if abs(value) >= size:
            return f"{value / size:g}{suffix}"
    return f"{value:g}"


def when(iso: str | None) -> str:
    """An ISO timestamp as 'YYYY-MM-DD HH:MM:SS UTC' (stored in UTC)."""
    if not iso:
        return ""
    try:
        dt = datetime.fromisoformat(iso)
    except ValueError:
        return iso
    return dt.strftime("%Y-%m-%d %H:%M:%S") + (" UTC" if dt.utcoffset() is not None else "")


def evidence_values(evidence: Mapping[str, Any], lang: str) -> dict[str, str]:
    """A control's evidence facts as words: durations (``*_seconds``), timestamps (``*_at``), lists."""
    out: dict[str, str] = {}
    for k, v in evidence.items():
        if k.endswith("_seconds"):
            out[k.removesuffix("_seconds")] = duration(v, lang)
        elif k.endswith("_at"):
            out[k] = when(v)
        elif isinstance(v, list | tuple):
            out[k] = ", ".join(str(x) for x in v) or "—"
        else:
            out[k] = str(v)
    return out


# ------------------------------------------------------------------------------------------------- charts
@dataclass(frozen=True)
class Bar:
    label: str
    y: float
    total: float  # width of the allocatable bar
    used: float | None  # width of the used bar (None: not observed)
    caption: str


@dataclass(frozen=True)
class Chart:
    """Geometry of a horizontal bar chart: per row, what is declared (allocatable) and what is used."""

    width: int
    height: int
    label_width: int
    plot_width: int
    row_height: int
    bars: tuple[Bar, ...]
    ticks: tuple[tuple[float, str], ...]


def bar_chart(
    rows: Sequence[tuple[str, float, float | None]],
    *,
    unit: str,
    width: int = 360,
    label_width: int = 120,
    row_height: int = 22,
) -> Chart:
    """Rows of (label, allocatable, used or None) on one scale, with four ticks."""
    top = max([r[1] for r in rows] + [r[2] or 0 for r in rows] + [1.0])
    scale = _nice(top)
    plot = width - label_width - 70
    bars = tuple(
        Bar(
            label=_fit(label, label_width - 8),
            y=i * row_height,
            total=plot * total / scale,
            used=None if used is None else plot * min(used, scale) / scale,
            caption=f"{number(used)} / {number(total)} {unit}" if used is not None else f"{number(total)} {unit}",
        )
        for i, (label, total, used) in enumerate(rows)
    )
    ticks = tuple((plot * f, compact(scale * f)) for f in (0, 0.5, 1))
    return Chart(width, row_height * len(rows) + 18, label_width, plot, row_height, bars, ticks)


def _fit(label: str, pixels: float, em: float = 10.0) -> str:
    """Shorten a label to fit ``pixels`` at a font of ``em`` px: wide (CJK) characters take 1 em, others 0.6."""
    width = 0.0
    for i, ch in enumerate(label):
        width += em if ord(ch) > 0x2E80 else 0.6 * em
        if width > pixels:
            return label[: max(i - 1, 1)] + "…"
    return label


def _nice(value: float) -> float:
    """The next 'round' number ≥ value (1, 2, 2.5, 5 × 10^n) so ticks read well."""
    exp = 10 ** math.floor(math.log10(value))
    for m in (1, 2, 2.5, 5, 10):
        if value <= m * exp:
            return float(m * exp)
    return float(10 * exp)  # pragma: no cover


# ------------------------------------------------------------------------------------------------- render
def _context(doc: Mapping[str, Any], lang: str) -> dict[str, Any]:
    t = Translator(lang)

    def dur(seconds: float | None) -> str:
        return duration(seconds, lang)

    def ev(evidence: Mapping[str, Any]) -> dict[str, str]:
        return evidence_values(evidence, lang)

    def name(obj: Mapping[str, Any]) -> str:
        """A name in the report's language where the inventory has one (name_en for English)."""
        if lang == "en" and obj.get("name_en"):
            return str(obj["name_en"])
        return str(obj.get("name") or obj.get("id") or "")

    return {
        "doc": doc,
        "lang": lang,
        "t": t,
        "dur": dur,
        "ev": ev,
        "num": number,
        "size": size_bytes,
        "when": when,
        "name": name,
        "bar_chart": bar_chart,
        "html_lang": "zh-CN" if lang == "zh" else "en",
    }


def render_html(doc: Mapping[str, Any], lang: str = "zh") -> str:
    return environment().get_template("reports/report.html.j2").render(**_context(doc, lang))


def render_markdown(doc: Mapping[str, Any], lang: str = "zh") -> str:
    return environment().get_template("reports/report.md.j2").render(**_context(doc, lang))


def render_json(doc: Mapping[str, Any]) -> str:
    return json.dumps(doc, ensure_ascii=False, indent=2, sort_keys=False) + "\n"


def render_pdf(doc: Mapping[str, Any], lang: str, out: Path) -> None:
    """Print the HTML with weasyprint (fonts from fontconfig: Debian's fonts-noto-cjk for Chinese)."""
    try:
        import weasyprint
    except (ImportError, OSError) as exc:  # OSError: pango/harfbuzz libraries missing
        raise DcctlError(
            f"PDF output needs weasyprint and its libraries ({exc})",
            hint="run scripts/bootstrap (installs libpango-1.0-0, libpangoft2-1.0-0, fonts-noto-cjk and weasyprint)",
        ) from None
    html = render_html(doc, lang)
    weasyprint.HTML(string=html, base_url=str(out.parent)).write_pdf(str(out))


def write(doc: Mapping[str, Any], formats: Sequence[str], lang: str, out_dir: Path) -> list[Path]:
    """Write the report in each format into ``out_dir``: report.<lang>.html|pdf|md, report.json; returns paths."""
    unknown = [f for f in formats if f not in FORMATS]
    if unknown:
        raise DcctlError(f"unknown report format '{unknown[0]}'", hint=f"use one of: {', '.join(FORMATS)}")
    Translator(lang)  # an unknown language fails before anything is written
    out_dir.mkdir(parents=True, exist_ok=True)
    writers: dict[str, Callable[[Path], object]] = {
        "html": lambda p: p.write_text(render_html(doc, lang), encoding="utf-8"),
        "md": lambda p: p.write_text(render_markdown(doc, lang), encoding="utf-8"),
        "json": lambda p: p.write_text(render_json(doc), encoding="utf-8"),
        "pdf": lambda p: render_pdf(doc, lang, p),
    }
    written = []
    for fmt in dict.fromkeys(formats):
        path = out_dir / ("report.json" if fmt == "json" else f"report.{lang}.{fmt}")
        writers[fmt](path)
        written.append(path)
    return written
