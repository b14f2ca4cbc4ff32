"""RocketQA's multi-step recipes as resumable pipelines."""
