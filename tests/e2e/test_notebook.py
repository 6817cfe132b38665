"""notebooks/walkthrough.ipynb executes cleanly (so it cannot rot)."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOK = REPO / "notebooks" / "walkthrough.ipynb"


@pytest.mark.slow
@pytest.mark.e2e
def test_walkthrough_notebook_runs(demo_home: Path, tmp_path: Path,
                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(NOTEBOOK, as_version=4)
    # The kernel inherits this process's environment: SUPPORTGRAPH_HOME is a private copy of
    # the template home (never the repository's .supportgraph) and provider URLs are dead.
    # It runs in a temp folder, finding the package on PYTHONPATH as an installed one would be.
    monkeypatch.setenv("PYTHONPATH", str(REPO))
    client = NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    # The last cell removes the eval's scratch folder: a run leaves nothing behind in /tmp.
    assert nb.cells[-1].outputs[-1]["data"]["text/plain"] == "False"
    images = [o for o in outputs if o.output_type == "display_data" and "image/png" in o.data]
    assert len(images) == 3
    text = "".join(o.get("text", "") for o in outputs if o.output_type == "stream")
    assert "human_review" in text or "out_of_scope" in text
    assert (demo_home / "state.db").is_file()
    assert not (REPO / "notebooks" / ".supportgraph").exists()
