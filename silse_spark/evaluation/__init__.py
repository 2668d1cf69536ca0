"""Score silse and classical image hashers on one variant suite with known ground truth.

``make eval`` (``python -m silse_spark.evaluation --output docs``) builds a
suite of source images, altered copies and distinct distractors
(:mod:`~silse_spark.evaluation.suite`), checks it shares no image with the
training data (:mod:`~silse_spark.evaluation.disjoint`), hashes every file
with md5, aHash, pHash, dHash, wHash, PDQ (:mod:`~silse_spark.evaluation.hashers`)
and every registered silse model through the production Spark job
(:mod:`~silse_spark.evaluation.silse`), scores them with the same pure
functions (:mod:`~silse_spark.evaluation.metrics`) and writes
``docs/evaluation.md`` and ``docs/evaluation.json``
(:mod:`~silse_spark.evaluation.report`).

The one public entry point is :func:`silse_spark.evaluation.__main__.run_evaluation`.
"""
