"""Build, validate, read and join the JSONL files of the Batch API, streaming.

An input file holds one request per line::

    {"custom_id": "req-1", "method": "POST", "url": "/v1/chat/completions", "body": {...}}

and a result (output or error) file one result per line::

    {"custom_id": "req-1", "response": {"status_code": 200, "body": {...}}, "error": null}

- :func:`write_requests`, :func:`iter_requests`, :func:`read_results`: write and read them.
- :func:`validate_file`, :func:`find_problems`, :func:`inspect_file`: check an input file
  against every rule of the Batch API, each problem with its line, param, code and message.
- :func:`join_results`: put results back beside their requests, in input order.
"""

from airflow_batch_provider.jsonl.files import JSONLSource, iter_requests, read_results, write_requests
from airflow_batch_provider.jsonl.join import answer_text, join_results, typed_output_checker
from airflow_batch_provider.jsonl.results import ResultHead, ResultTally, iter_heads, tally_results
from airflow_batch_provider.jsonl.validation import (
    INVALID_JSON_MESSAGE,
    MODEL_NOT_FOUND_MESSAGE,
    InputReport,
    ProblemCode,
    endpoint_problem,
    find_problems,
    inspect_file,
    missing_field_message,
    validate_file,
)
from airflow_batch_provider.rules import (
    EMBEDDINGS_ENDPOINT,
    MAX_EMBEDDING_INPUTS,
    MAX_FILE_BYTES,
    MAX_REQUESTS,
    SUPPORTED_ENDPOINTS,
)

__all__ = [
    "EMBEDDINGS_ENDPOINT",
    "INVALID_JSON_MESSAGE",
    "MAX_EMBEDDING_INPUTS",
    "MAX_FILE_BYTES",
    "MAX_REQUESTS",
    "MODEL_NOT_FOUND_MESSAGE",
    "SUPPORTED_ENDPOINTS",
    "InputReport",
    "JSONLSource",
    "ProblemCode",
    "ResultHead",
    "ResultTally",
    "answer_text",
    "endpoint_problem",
    "find_problems",
    "inspect_file",
    "iter_heads",
    "iter_requests",
    "join_results",
    "missing_field_message",
    "read_results",
    "tally_results",
    "typed_output_checker",
    "validate_file",
    "write_requests",
]
