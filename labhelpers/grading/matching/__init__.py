"""Match a student's edited notebook to the release, so that nbgrader grades every honest notebook in full.

nbgrader finds answers by the ``grade_id`` in each cell's ``metadata.nbgrader``. Ordinary editing duplicates, splits,
merges or drops that metadata, and nbgrader then fails the whole notebook: ``DeduplicateIds`` keeps the last cell of a
duplicated grade_id and empties the others' nbgrader metadata, which ``CheckCellMetadata`` rejects as an outdated schema
(nbgrader 0.9.6 ``preprocessors/deduplicateids.py``, ``nbgraderformat/common.py``; jupyter/nbgrader#1083, open since
2019; #1941: 15 of 300 notebooks of one course). `tidy` rebuilds the release with the student's answers in it instead.

What editors do to cells (read in their sources and issue trackers):

* JupyterLab 4 (``packages/notebook/src/actions.tsx``). *Copy* puts the cells' JSON on the clipboard without
  ``metadata.deletable`` (``Private.selectedCells``); *paste* inserts it with a new id (only a cut code cell keeps its
  id), so the nbgrader metadata, grade_id included, is duplicated (nbgrader#1083, #1331). *Split* (Ctrl-Shift-minus,
  ``splitCell``) replaces the cell by clones that each carry its full metadata and a new id, every part's leading and
  trailing newlines removed. *Merge* (``mergeCells``) inserts one new cell with the active cell's type and metadata
  (code: ``trusted``), the sources joined by a blank line, and deletes the others, locked and undeletable ones too
  (jupyterlab#11140). *Change type* (``changeCellType``) inserts a new cell (new id) with the same source and metadata.
  *Clear outputs* empties outputs and execution counts only. New cells have metadata ``{}`` (code: ``trusted``).
  ``editable: false`` stops typing and ``deletable: false`` deleting; neither stops copy, split or merge.
* Notebook 6 (``notebook/static/notebook/js/notebook.js``, ``cell.js``). ``copy_cell`` drops ``deletable`` and the id;
  paste keeps the rest of the metadata. ``split_cell`` and ``merge_cells`` refuse cells with ``deletable: false`` (so
  nbgrader's answer cells), split copies the metadata to every part, ``to_markdown`` moves it to the new cell
  (``transfer_to_new_cell``). Files in nbformat 4.4 have no cell ids.
* VS Code (``extensions/ipynb/src/deserializers.ts``, ``serializers.ts``, ``cellIdService.ts``;
  ``notebook/browser/controller/cellOperations.ts`` and the split command). Cell metadata is read and written back as it
  was, nbgrader's included, with keys sorted; ``editable`` and ``deletable`` are not enforced, so instructor cells can
  be edited and deleted (TU-Wien-dataLAB/grader-service#213). New cells get metadata ``{}`` and an 8-hex id. *Split*
  keeps the first part in the cell and gives the other parts metadata ``{}``; *join* appends the next cells' text to the
  first one, which keeps its metadata; changing the kind keeps the metadata; copy/paste copies the metadata and, until
  2024, the cell id too (microsoft/vscode#143396, #167951).
* Colab (closed source; seen in Colab-saved files). nbformat 4.0 without cell ids; each cell's metadata gets an ``id``
  (googlecolab/colabtools#581), code cells ``colab`` and ``outputId``; the notebook gets ``metadata.colab``. Whether
  other cell metadata survives is not documented (jax-ml/jax#2402 saw a custom key kept), so nothing here relies on
  it: a notebook without any nbgrader metadata is matched by content alone.

How cells are matched. The release has *instructor cells* (everything but answers: locked markdown, read-only code,
test cells) and *answer cells* (``solution: true``: a code stub or "YOUR ANSWER HERE"). One `Matching` record
(``state``) carries the release's cells (``release``), the submitted parts (``submission``) and the notes (``notes``)
through the steps:

0. ``forged``: a cell whose nbgrader metadata claims points the release does not give (a grade_id of its own, or
   other points) is named for review; the rebuilt notebook's grade cells are the release's, so nbgrader never sees it.
1. ``merged``: instructor cells that are nowhere as a cell of their own are looked for inside merged cells and cut
   out of them.
2. ``anchors``: instructor cells are anchored in order: a submitted cell is an instructor cell by grade_id or by its
   normalised source, and the best order-preserving set of such matches is kept (a weighted longest increasing
   subsequence); other copies are dropped.
3. ``answers``: answers are found by grade_id, else by the functions and classes their stub defines (``def
   decompose_weight``, ``class DoRALinear``) or, in place, by the stub's first line; written answers by position, as
   the markdown between their question and the next instructor cell. A cell right after an answer's part continues it
   when it cannot stand alone (a split's later parts lose their metadata in VS Code and Colab): code that is indented
   or parses only joined to the part above, or any markdown after a written answer.
4. ``choose``: the parts of a split answer are joined in order (a written answer's pasted images pooled,
   ``attachments``); an identical copy, or the untouched stub beside the student's own version, is dropped; when
   several cells define the same stub function, the last one above its test cell is the answer (what the notebook
   ran) and the others stay as plain cells.
5. ``definitions``: a code answer whose own cell has only its stub is looked for in the other cells (every definition
   gathered in the first answer cell): the last definition of each stub name that is not the stub is graded, and the
   stub gives way to a comment saying where it is, so that it no longer shadows it.
6. ``build``: cells that are none of these are kept after the release cell they followed, without nbgrader metadata;
   markdown cells keep their images (one that a cell refers to but lacks is marked in its place).

``rebuild`` runs the steps (`tidy`).
"""

from labhelpers.grading.matching.rebuild import Tidied, tidy

__all__ = ["Tidied", "tidy"]
