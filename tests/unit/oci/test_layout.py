"""An OCI layout read from disk (an offline kit) is whoever wrote it: its small JSON files are
parsed strictly and under a depth bound, every failure a FormatError, never a RecursionError."""

from __future__ import annotations

from pathlib import Path

import pytest

from opk_sign.errors import FormatError
from opk_sign.oci.layout import LayoutReader, LayoutWriter


def _layout(tmp_path: Path) -> Path:
    root = tmp_path / "layout"
    LayoutWriter(root).write_index([])
    return root


@pytest.mark.parametrize(
    "marker",
    ["[" * 3000, '{"imageLayoutVersion": "1.0.0", "imageLayoutVersion": "1.0.0"}', "[]", "{", ""],
)
def test_a_hostile_oci_layout_marker_is_a_format_error(tmp_path: Path, marker: str) -> None:
    root = _layout(tmp_path)
    (root / "oci-layout").write_text(marker)
    with pytest.raises(FormatError, match="oci-layout is not an OCI image layout"):
        LayoutReader(root)


@pytest.mark.parametrize("index", ["[" * 5000, '{"manifests": [], "manifests": []}', "{"])
def test_a_hostile_index_is_a_format_error(tmp_path: Path, index: str) -> None:
    root = _layout(tmp_path)
    (root / "index.json").write_text(index)
    with pytest.raises(FormatError, match="index.json is not JSON"):
        LayoutReader(root).index()
