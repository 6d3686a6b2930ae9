CREATE TABLE IF NOT EXISTS abtesting_exposures (
    experiment_key  String,
    variation_index UInt32,
    variation_key   String,
    hash_attribute  String,
    user_id         String,
    bucket          Float64,
    time            DateTime,
    time_ms         UInt16,
    date            Date,
    cell            String
) ENGINE = MergeTree
PARTITION BY toYYYYMM(date)
ORDER BY (experiment_key, user_id, time)
