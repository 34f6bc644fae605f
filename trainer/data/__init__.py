"""Data: find labelled images (sources), split them by near-duplicate group and family (split), decode
them once into a cache (cache), and serve augmented training batches and plugin-identical validation
images (dataset). The names below are the package's public face; each lives in the module of its job."""

from .cache import CACHE_SCALE, DecodedImage, decode_all, decode_record
from .dataset import (
    UNLABELED,
    PreparedData,
    SampleStream,
    TrainSet,
    file_factors,
    prepare_data,
    sampling_weights,
    val_batches,
)
from .sources import (
    IMAGE_SUFFIXES,
    PACKAGE_DEFAULT_LABEL,
    PACKAGE_PREFIX,
    DataMissing,
    ImageRecord,
    excluded,
    family_from_source_path,
    fetch_package,
    is_wild,
    load_all_records,
    load_hf_records,
    load_records,
    parse_package_source,
    resolve_labels,
    scan_imagefolder,
    scan_package,
    scan_source,
    scan_unlabeled,
    wild_records,
)
from .split import earlier_sides, family_folds, grouped_split, near_duplicate_groups

__all__ = [
    "CACHE_SCALE", "DataMissing", "IMAGE_SUFFIXES", "PACKAGE_DEFAULT_LABEL", "PACKAGE_PREFIX", "UNLABELED", "DecodedImage",
    "ImageRecord", "PreparedData", "SampleStream", "TrainSet", "decode_all", "decode_record", "earlier_sides",
    "excluded", "family_folds", "family_from_source_path", "fetch_package", "file_factors", "grouped_split", "is_wild",
    "load_all_records", "load_hf_records", "load_records", "near_duplicate_groups", "parse_package_source",
    "prepare_data", "resolve_labels", "sampling_weights", "scan_imagefolder", "scan_package", "scan_source",
    "scan_unlabeled", "val_batches", "wild_records",
]
