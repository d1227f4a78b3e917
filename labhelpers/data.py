"""SST-2: find it (local folder, then the hub), sample it, tokenise it with dynamic padding."""

from __future__ import annotations

import csv
import hashlib
import os
from functools import lru_cache
from pathlib import Path

import numpy as np

from labhelpers.config import PROJECT_ROOT, get_config
from labhelpers.errors import LabDataError

SPLITS = ("train", "validation")
HEADER = ["sentence", "label"]
HUB_ID = ("nyu-mll/glue", "sst2")
PROJECT_DATA_DIR = PROJECT_ROOT / "data" / "sst2"

_HOW_TO_FIX = (
    "Point LAB_DATA_DIR at a folder holding SST-2's train.tsv and validation.tsv "
    "(for example `export LAB_DATA_DIR=/path/to/sst2`), or run `make data` once while online "
    "to fill data/sst2/."
)


def load_sst2(split: str, n: int | None = None, data_dir: str | os.PathLike | None = None, seed: int = 0):
    """Load one SST-2 split as a `datasets.Dataset` with columns `sentence`, `label`, `idx`.

    Looks, in order, in `data_dir`, `$LAB_DATA_DIR`, the project's `data/sst2/`, then the hub (GLUE `sst2`).

    Args:
        split: "train" or "validation".
        n: sample size; None keeps the whole split. The sample is label-stratified and reproducible.
        data_dir: a folder holding `train.tsv` and `validation.tsv`.
        seed: the sampling seed.

    Returns:
        A Dataset of `n` (or all) rows, sorted by `idx` (the 0-based row number in the split).
    """
    if split not in SPLITS:
        raise LabDataError(
            f"Unknown SST-2 split {split!r}: use one of {', '.join(SPLITS)} (GLUE's test split has no labels)."
        )
    if n is not None and (isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0):
        raise LabDataError(
            f"n={n!r} is not a positive whole number: pass n=None for the whole split or, e.g., n=2000."
        )
    sentences, labels = _read_split(split, data_dir)
    idx = np.arange(len(labels))
    if n is not None:
        if n > len(labels):
            raise LabDataError(
                f"n={n} is larger than the {split} split ({len(labels):,} rows): pass n <= {len(labels):,} or n=None."
            )
        idx = stratified_indices(labels, n, seed)
    from datasets import Dataset

    return Dataset.from_dict(
        {"sentence": [sentences[i] for i in idx], "label": [int(labels[i]) for i in idx], "idx": [int(i) for i in idx]}
    )


def stratified_indices(labels, n: int, seed: int = 0) -> np.ndarray:
    """Pick `n` row indices whose label proportions match the whole split's.

    Args:
        labels: (N,) integer labels.
        n: how many rows to pick, 1 <= n <= N.
        seed: seed of the numpy Generator that shuffles within each label.

    Returns:
        (n,) sorted row indices.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    # Largest-remainder allocation: proportional quotas that add up to exactly n.
    quotas = counts * n / len(labels)
    take = np.floor(quotas).astype(int)
    for k in np.argsort(-(quotas - take), kind="stable")[: n - take.sum()]:
        take[k] += 1
    picked = [rng.permutation(np.flatnonzero(labels == c))[:t] for c, t in zip(classes, take)]
    return np.sort(np.concatenate(picked))


def length_grouped_order(lengths, order, batch_size: int, rng: np.random.Generator, megabatch: int = 32) -> np.ndarray:
    """Reorder a shuffled index list so that each run of `batch_size` holds sentences of similar length.

    The order is cut into windows of `megabatch * batch_size` indices; each window is sorted by length and cut
    into batches, and the batches of the whole list are shuffled. Batches stay random samples of the data (only
    their lengths are grouped), and dynamic padding then pads little: training is about twice as fast on SST-2
    (the idea of Hugging Face's `group_by_length`).

    Args:
        lengths: (N,) length of every row (characters or tokens).
        order: a permutation (or subset) of row indices, e.g. one epoch's shuffle.
        batch_size: rows per batch.
        rng: the numpy Generator that shuffles the batches.
        megabatch: batches per sorted window.

    Returns:
        The same indices, reordered; consecutive `batch_size` slices are the batches.
    """
    lengths, order = np.asarray(lengths), np.asarray(order)
    if batch_size < 1 or megabatch < 1:
        raise ValueError(f"batch_size={batch_size} and megabatch={megabatch} must be at least 1")
    window = batch_size * megabatch
    batches = []
    for start in range(0, len(order), window):
        part = order[start : start + window]
        part = part[np.argsort(-lengths[part], kind="stable")]
        batches += [part[i : i + batch_size] for i in range(0, len(part), batch_size)]
    # A short last batch anywhere but at the end would change the mean loss weighting: keep full batches first.
    full = [b for b in batches if len(b) == batch_size]
    short = [b for b in batches if len(b) < batch_size]
    full = [full[i] for i in rng.permutation(len(full))]
    return np.concatenate(full + short) if batches else order[:0]


def _read_split(split: str, data_dir) -> tuple[list[str], np.ndarray]:
    """Return (sentences, labels) of `split` from the first source that has SST-2."""
    if data_dir is not None:
        return read_tsv(_split_file(Path(data_dir), split, "data_dir"))
    env_dir = get_config().data_dir
    if env_dir is not None:
        return read_tsv(_split_file(env_dir, split, "LAB_DATA_DIR"))
    if (PROJECT_DATA_DIR / f"{split}.tsv").is_file():
        return read_tsv(PROJECT_DATA_DIR / f"{split}.tsv")
    return _from_hub(split)


def _split_file(folder: Path, split: str, source: str) -> Path:
    if not folder.is_dir():
        raise LabDataError(f"{source}={str(folder)!r} is not a folder. {_HOW_TO_FIX}")
    path = folder / f"{split}.tsv"
    if not path.is_file():
        raise LabDataError(
            f"{path} is missing ({source} points at {folder}). That folder needs train.tsv and validation.tsv. {_HOW_TO_FIX}"
        )
    return path


def read_tsv(path: str | os.PathLike) -> tuple[list[str], np.ndarray]:
    """Read an SST-2 TSV (header `sentence<TAB>label`, no quoting) into (sentences, labels).

    Args:
        path: the file.

    Returns:
        (sentences, labels): N strings and an (N,) int64 array of 0/1.
    """
    path = Path(path)
    stat = path.stat()
    # Cached on (path, size, mtime): the 67k-row train file is read once per process, re-read if it changes.
    return _read_tsv_cached(str(path.resolve()), stat.st_size, stat.st_mtime_ns)


@lru_cache(maxsize=8)
def _read_tsv_cached(path: str, size: int, mtime_ns: int) -> tuple[list[str], np.ndarray]:
    if size == 0:
        raise LabDataError(f"{path} is empty. Replace it with SST-2's {Path(path).name}. {_HOW_TO_FIX}")
    sentences, labels = [], []
    # Sentences contain ", ` and ' characters: quoting must be off (see the data folder's README).
    with open(path, encoding="utf-8", newline="") as handle:
        rows = csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE)
        header = next(rows, None)
        if header != HEADER:
            raise LabDataError(
                f"{path} starts with {header!r}, not the header {'<TAB>'.join(HEADER)!r}. "
                f"Is it an SST-2 file from GLUE? {_HOW_TO_FIX}"
            )
        for line_no, row in enumerate(rows, start=2):
            if len(row) != 2 or row[1] not in ("0", "1"):
                raise LabDataError(
                    f"{path}, line {line_no}: expected `sentence<TAB>0` or `sentence<TAB>1`, got {row!r}. "
                    f"The file is damaged or not SST-2. {_HOW_TO_FIX}"
                )
            sentences.append(row[0])
            labels.append(int(row[1]))
    if not labels:
        raise LabDataError(f"{path} has a header but no rows. {_HOW_TO_FIX}")
    return sentences, np.asarray(labels, dtype=np.int64)


def _hub_offline() -> bool:
    return any(
        os.environ.get(v, "").strip().lower() in {"1", "true", "yes", "on"}
        for v in ("HF_DATASETS_OFFLINE", "HF_HUB_OFFLINE")
    )


def _from_hub(split: str) -> tuple[list[str], np.ndarray]:
    if _hub_offline():
        raise LabDataError(
            f"SST-2 was not found locally and the hub is off (HF_HUB_OFFLINE/HF_DATASETS_OFFLINE is set). {_HOW_TO_FIX}"
        )
    try:
        from datasets import load_dataset

        ds = load_dataset(*HUB_ID, split=split)
    except Exception as exc:  # any failure of the network path becomes one actionable message
        raise LabDataError(
            f"SST-2 was not found locally and the hub could not be reached ({type(exc).__name__}). {_HOW_TO_FIX}"
        ) from None
    return list(ds["sentence"]), np.asarray(ds["label"], dtype=np.int64)


def write_tsv(sentences, labels, path: str | os.PathLike) -> None:
    """Write SST-2 rows in the lab's TSV format (header `sentence<TAB>label`, no quoting)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("\t".join(HEADER) + "\n")
        for sentence, label in zip(sentences, labels):
            # No quoting and no escapes, as GLUE ships it: a tab or newline inside a sentence becomes a space.
            clean = " ".join(str(sentence).replace("\t", " ").splitlines())
            handle.write(f"{clean}\t{int(label)}\n")


def download_sst2(dest: str | os.PathLike = PROJECT_DATA_DIR) -> Path:
    """Fetch SST-2 train and validation from the hub into `dest` as TSVs (what `make data` runs).

    Args:
        dest: the folder to fill.

    Returns:
        The folder.
    """
    dest = Path(dest)
    for split in SPLITS:
        sentences, labels = _from_hub(split)
        write_tsv(sentences, labels, dest / f"{split}.tsv")
        print(f"wrote {dest / f'{split}.tsv'}: {len(labels):,} rows")
    return dest


def tokenize(dataset, tokenizer, max_length: int = 128):
    """Tokenise `sentence` without padding (padding happens per batch), keeping `labels`.

    Args:
        dataset: a Dataset from load_sst2.
        tokenizer: a Hugging Face tokenizer.
        max_length: longer sentences are truncated.

    Returns:
        A Dataset with `input_ids`, `attention_mask` (and `token_type_ids`) and `labels`.
    """

    def encode(batch):
        encoded = tokenizer(batch["sentence"], truncation=True, max_length=max_length)
        encoded["labels"] = batch["label"]
        return encoded

    from datasets.utils import logging as ds_logging

    # A progress bar for a sub-second map is noise in a notebook; keep the user's setting afterwards.
    bars = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        # datasets fingerprints a map by pickling `encode` with the tokenizer inside (seconds per call); name the
        # result from what decides it instead: the dataset's own fingerprint, the tokenizer and max_length.
        key = f"{dataset._fingerprint}|{tokenizer.name_or_path}|{len(tokenizer)}|{max_length}"
        fingerprint = hashlib.sha256(key.encode()).hexdigest()[:32]
        return dataset.map(encode, batched=True, remove_columns=dataset.column_names, new_fingerprint=fingerprint)
    finally:
        if bars:
            ds_logging.enable_progress_bar()


def make_dataloader(dataset, tokenizer, batch_size: int, shuffle: bool = False, seed: int = 0, max_length: int = 128):
    """Build a DataLoader of padded batches from a load_sst2 Dataset.

    Dynamic padding: each batch is padded to its own longest sentence, not to `max_length`. SST-2's
    phrases are short (median about 10 tokens), so this makes training several times cheaper.

    Args:
        dataset: a Dataset with `sentence` and `label`.
        tokenizer: a Hugging Face tokenizer.
        batch_size: sentences per batch.
        shuffle: reshuffle every epoch, reproducibly from `seed`.
        seed: the shuffling seed.
        max_length: longer sentences are truncated.

    Returns:
        A DataLoader yielding dicts of LongTensors: `input_ids` (B, T), `attention_mask` (B, T),
        (`token_type_ids` (B, T)) and `labels` (B,).
    """
    import torch
    from torch.utils.data import DataLoader
    from transformers import DataCollatorWithPadding

    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        tokenize(dataset, tokenizer, max_length),
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=DataCollatorWithPadding(tokenizer, return_tensors="pt"),
    )
