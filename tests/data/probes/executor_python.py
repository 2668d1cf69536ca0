"""spark-submit probe: print, as JSON, which Python interpreter each executor task ran."""

import json
import sys

from pyspark.sql import SparkSession

if __name__ == "__main__":
    spark = SparkSession.builder.appName("silse-probe").getOrCreate()

    def where(_: object) -> list[tuple[str, str]]:
        import silse_spark

        return [(sys.executable, silse_spark.__file__)]

    seen = spark.sparkContext.parallelize(range(8), 8).mapPartitions(where).distinct().collect()
    print("PROBE " + json.dumps(sorted(seen)))
    spark.stop()
