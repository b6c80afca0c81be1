"""System tests: a real Airflow deployment (separate processes) and the emulator, driven over HTTP."""
