"""The TFRS "context features" tutorial as a plain script (the pipeline's yardstick).

Faithful to the tutorial (../shared/reference): the same features, layers,
split (shuffle of 100k with seed 42, take 80k / 20k), Adagrad 0.1, 3 epochs,
batch 2048, FactorizedTopK computed on every training step, train and test
evaluation, for use_timestamps False then True. The one change: ratings and
movies come from the ml-100k files (tfds.load cannot download here), with the
fields tensorflow-datasets gives.

  python bench/tutorial_script.py [--data ../shared/data/ml-100k]
Prints the accuracies, the wall time and the peak RSS as one JSON line.
"""

import argparse
import json
import os
import resource
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import core  # noqa: E402,F401  (Keras 2 before TensorFlow loads)

# isort: split
import numpy as np
import tensorflow as tf
import tensorflow_recommenders as tfrs

from movielens import reader


def load(path):
    data = reader.load(path)
    r = data.ratings
    ratings = tf.data.Dataset.from_tensor_slices({
        "movie_title": [data.movies[m].title for m in r.movie_ids],
        "user_id": r.user_ids,
        "timestamp": r.timestamps,
    })
    movies = tf.data.Dataset.from_tensor_slices([data.movies[m].title for m in sorted(data.movies, key=int)])
    return ratings, movies


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", default=os.path.join(os.path.dirname(__file__), "..", "..", "shared", "data", "ml-100k"))
    args = parser.parse_args()
    started = time.time()
    ratings, movies = load(args.data)

    timestamps = np.concatenate(list(ratings.map(lambda x: x["timestamp"]).batch(100)))
    timestamp_buckets = np.linspace(timestamps.min(), timestamps.max(), num=1000)
    unique_movie_titles = np.unique(np.concatenate(list(movies.batch(1000))))
    unique_user_ids = np.unique(np.concatenate(list(ratings.batch(1_000).map(lambda x: x["user_id"]))))

    class UserModel(tf.keras.Model):
        def __init__(self, use_timestamps):
            super().__init__()
            self._use_timestamps = use_timestamps
            self.user_embedding = tf.keras.Sequential([
                tf.keras.layers.StringLookup(vocabulary=unique_user_ids, mask_token=None),
                tf.keras.layers.Embedding(len(unique_user_ids) + 1, 32),
            ])
            if use_timestamps:
                self.timestamp_embedding = tf.keras.Sequential([
                    tf.keras.layers.Discretization(timestamp_buckets.tolist()),
                    tf.keras.layers.Embedding(len(timestamp_buckets) + 1, 32),
                ])
                self.normalized_timestamp = tf.keras.layers.Normalization(axis=None)
                self.normalized_timestamp.adapt(timestamps)

        def call(self, inputs):
            if not self._use_timestamps:
                return self.user_embedding(inputs["user_id"])
            return tf.concat([
                self.user_embedding(inputs["user_id"]),
                self.timestamp_embedding(inputs["timestamp"]),
                tf.reshape(self.normalized_timestamp(inputs["timestamp"]), (-1, 1)),
            ], axis=1)

    class MovieModel(tf.keras.Model):
        def __init__(self):
            super().__init__()
            max_tokens = 10_000
            self.title_embedding = tf.keras.Sequential([
                tf.keras.layers.StringLookup(vocabulary=unique_movie_titles, mask_token=None),
                tf.keras.layers.Embedding(len(unique_movie_titles) + 1, 32),
            ])
            self.title_vectorizer = tf.keras.layers.TextVectorization(max_tokens=max_tokens)
            self.title_text_embedding = tf.keras.Sequential([
                self.title_vectorizer,
                tf.keras.layers.Embedding(max_tokens, 32, mask_zero=True),
                tf.keras.layers.GlobalAveragePooling1D(),
            ])
            self.title_vectorizer.adapt(movies)

        def call(self, titles):
            return tf.concat([self.title_embedding(titles), self.title_text_embedding(titles)], axis=1)

    class MovielensModel(tfrs.models.Model):
        def __init__(self, use_timestamps):
            super().__init__()
            self.query_model = tf.keras.Sequential([UserModel(use_timestamps), tf.keras.layers.Dense(32)])
            self.candidate_model = tf.keras.Sequential([MovieModel(), tf.keras.layers.Dense(32)])
            self.task = tfrs.tasks.Retrieval(
                metrics=tfrs.metrics.FactorizedTopK(candidates=movies.batch(128).map(self.candidate_model)),
            )

        def compute_loss(self, features, training=False):
            query_embeddings = self.query_model({"user_id": features["user_id"], "timestamp": features["timestamp"]})
            movie_embeddings = self.candidate_model(features["movie_title"])
            return self.task(query_embeddings, movie_embeddings)

    tf.random.set_seed(42)
    shuffled = ratings.shuffle(100_000, seed=42, reshuffle_each_iteration=False)
    train = shuffled.take(80_000)
    test = shuffled.skip(80_000).take(20_000)
    cached_train = train.shuffle(100_000).batch(2048)
    cached_test = test.batch(4096).cache()

    result = {}
    for name, use_timestamps in (("baseline", False), ("timestamp", True)):
        model = MovielensModel(use_timestamps=use_timestamps)
        model.compile(optimizer=tf.keras.optimizers.Adagrad(0.1))
        model.fit(cached_train, epochs=3, verbose=0)
        key = "factorized_top_k/top_100_categorical_accuracy"
        result[name] = {
            "train_top_100": float(model.evaluate(cached_train, return_dict=True, verbose=0)[key]),
            "test_top_100": float(model.evaluate(cached_test, return_dict=True, verbose=0)[key]),
        }
    result["wall_seconds"] = round(time.time() - started, 1)
    result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
