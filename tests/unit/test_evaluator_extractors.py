"""The Evaluator's extractors: TFMA's defaults carrying only the columns the evaluation reads."""

import numpy as np
import pyarrow as pa
from tensorflow_model_analysis import constants
from tensorflow_model_analysis.extractors import extractor

from components import evaluator_extractors as ex
from pipeline.config import PipelineConfig
from pipeline.evaluation import SLICE_FEATURES, eval_config
from trainer import tfma_metric
from trainer.export import EVAL_INPUT


def test_the_evaluation_reads_only_the_slicing_features_and_the_paired_comparisons_keys():
    config = eval_config(PipelineConfig(data_path="d"))
    assert ex.read_features(config) == set(SLICE_FEATURES) | set(tfma_metric.PAIRED_FEATURES)
    unpaired = eval_config(PipelineConfig(data_path="d"))
    kept = [m for m in unpaired.metrics_specs[0].metrics if not tfma_metric.is_paired_gain(m)]
    del unpaired.metrics_specs[0].metrics[:]
    unpaired.metrics_specs[0].metrics.extend(kept)
    assert ex.read_features(unpaired) == set(SLICE_FEATURES)
    config.slicing_specs.add(slice_keys_sql="SELECT STRUCT(user_id) FROM example")
    assert ex.read_features(config) is None  # SQL slices may read any column: TFMA's defaults unchanged
    other = eval_config(PipelineConfig(data_path="d"))
    other.metrics_specs[0].metrics.add(class_name="MeanLabel")
    assert ex.read_features(other) is None


def test_the_steps_keep_the_read_columns_and_feed_the_signature_by_name():
    raw = pa.array([[b"e1"], [b"e2"]], pa.list_(pa.binary()))
    batch = pa.RecordBatch.from_arrays(
        [raw, pa.array([[1], [0]]), pa.array([[b"a", b"b"], [b"c"]])],
        [constants.ARROW_INPUT_COLUMN, "user_in_train", "history"])
    kept = ex._keep_columns({"user_in_train"})({constants.ARROW_RECORD_BATCH_KEY: batch, "other": 1})
    assert kept[constants.ARROW_RECORD_BATCH_KEY].schema.names == [constants.ARROW_INPUT_COLUMN, "user_in_train"]
    assert kept["other"] == 1 and batch.num_columns == 3  # the input extract is not changed

    examples = np.array([b"e1", b"e2"], object)
    extracts = {constants.FEATURES_KEY: {"user_in_train": np.array([[1], [0]])}, constants.INPUT_KEY: examples}
    fed = ex._add_signature_input(extracts)
    assert fed[constants.FEATURES_KEY][EVAL_INPUT] is examples and EVAL_INPUT not in extracts[constants.FEATURES_KEY]
    dropped = ex._drop_inputs({**fed, constants.PREDICTIONS_KEY: {"hit_at_1": np.array([1.0, 0.0])}})
    assert set(dropped) == {constants.FEATURES_KEY, constants.PREDICTIONS_KEY}
    assert list(dropped[constants.FEATURES_KEY]) == ["user_in_train"]


def test_the_steps_wrap_tfmas_default_extractors():
    default = ["ExtractFeatures", "ExtractTransformedFeatures", "ExtractLabels", "ExtractExampleWeights",
               "ExtractPredictions", "ExtractUnbatchedInputs", "ExtractSliceKeys"]
    extractors = [extractor.Extractor(stage_name=name, ptransform=None) for name in default]
    stages = [e.stage_name for e in ex.with_steps(extractors, {"user_in_train"})]
    assert stages == ["KeepReadColumns", "ExtractFeatures", "AddSignatureInput", *default[1:5], "DropInputs",
                      *default[5:]]
    assert ex.with_steps(extractors, None) == extractors
    no_model = [e for e in extractors if e.stage_name != "ExtractPredictions"]
    assert ex.with_steps(no_model, {"user_in_train"}) == no_model
