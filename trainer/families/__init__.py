"""Model families: each a module of this package, declaring one pair of towers and what they read.

ModelConfig.family names the family (trainer.config.FAMILIES, the names of this package's modules). A
family module is the one place that decides, for its towers (the `Family` interface below):

  NAME                    its name in ModelConfig.family
  towers(tf_transform_output, config)
                          its query and candidate towers (in that order), sized from Transform's vocabularies
  CANDIDATE_VOCABULARIES  the Transform vocabulary of its candidate key and the same with train counts (the
                          logQ correction's candidate probabilities: trainer.task.candidate_probabilities)
  CANDIDATE_FEATURES      the raw catalog features its candidate tower is fed (through the Transform layer): the
                          catalog's embeddings, and the rated movie's in the exported model's evaluate_hits
  QUERY_FEATURES          the raw rating features its query tower is fed (through the Transform layer): of the
                          serving signature's inputs (trainer.export), the ones the exported model passes on
  TUTORIAL_FEATURES       whether its towers read Transform's tutorial-tower features (user and title
                          vocabularies, title words, timestamp buckets: TransformConfig.tutorial_features)

Families: `tutorial` (the TFRS tutorial's towers: user id and time against the title) and `history` (the
rating's recent movies against the movie). The generic layers (projections, history pooling, the retrieval
model) are trainer.model's. Adding a family: a module here and its name in trainer.config.FAMILIES.

Importing a family module loads TensorFlow; this package itself does not (get imports a family's module
when asked), so pipeline.config and the command line still validate configs without TensorFlow.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Protocol, Tuple

from core.errors import check_choice
from trainer.config import FAMILIES

if TYPE_CHECKING:  # annotations only: TensorFlow is not loaded by this package
    import tensorflow as tf
    import tensorflow_transform as tft

    from trainer.config import ModelConfig


class Family(Protocol):
    """What a family module declares (see the package docstring)."""

    NAME: str
    CANDIDATE_VOCABULARIES: Tuple[str, str]
    CANDIDATE_FEATURES: Tuple[str, ...]
    QUERY_FEATURES: Tuple[str, ...]
    TUTORIAL_FEATURES: bool

    def towers(self, tf_transform_output: "tft.TFTransformOutput",
               config: "ModelConfig") -> Tuple["tf.keras.Model", "tf.keras.Model"]:
        ...


def get(name: str) -> Family:
    """The family `name` (one of trainer.config.FAMILIES): its module."""
    check_choice("family", name, FAMILIES)
    return importlib.import_module(f"{__name__}.{name}")
