"""``python -m airflow_batch_provider.emulator``: the ``openai-batch-emulator`` CLI."""

from airflow_batch_provider.emulator.cli import main

if __name__ == "__main__":
    main()
