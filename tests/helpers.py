"""Helpers shared by the model tests (plain functions; fixtures live in conftest.py)."""

import os

import numpy as np
import tensorflow as tf
import tensorflow_transform as tft
import tensorflow_transform.beam as tft_beam
from tensorflow_transform.tf_metadata import dataset_metadata, schema_utils

from transform.preprocessing import preprocessing_fn


def tft_analyze(rows, out_dir, raw_spec, custom_config=None) -> tft.TFTransformOutput:
    """Runs preprocessing_fn's analyzers over `rows` (dicts of raw values; numpy arrays for list features)."""
    metadata = dataset_metadata.DatasetMetadata(schema_utils.schema_from_feature_spec(raw_spec))
    instances = [{k: v if isinstance(v, np.ndarray) else np.array([v]) for k, v in row.items()} for row in rows]
    with tft_beam.Context(temp_dir=os.path.join(out_dir, "tmp"), force_tf_compat_v1=False):
        transform_fn = (instances, metadata) | tft_beam.AnalyzeDataset(
            lambda inputs: preprocessing_fn(inputs, custom_config)
        )
        _ = transform_fn | tft_beam.WriteTransformFn(out_dir)
    return tft.TFTransformOutput(out_dir)


def no_history(n: int) -> dict:
    """serving_default's history inputs for `n` users with empty histories."""
    return {"history": tf.fill([n, 0], ""), "history_timestamps": tf.zeros([n, 0], tf.int64)}
