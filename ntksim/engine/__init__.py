"""The study engine: config dispatch, hashed cells, shards, claims, resume, executors, outputs.

It knows no study by name; `ntksim.engine.study` says what a study provides and how one is
found (`ntksim.studies.<name>` or any module path).
"""
