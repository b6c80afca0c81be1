"""The provider's pages inside the Airflow UI, served by the API server.

* "OpenAI Batches" (Browse menu): the batches that Airflow tasks created, on every connection
  of type ``openai_batch``, with progress, tokens, estimated cost, links, filters and a
  cancel button (:mod:`.pages`, :mod:`.actions`).
* "Batch", a tab of every task instance: that task instance's batches, the first lines of
  their error files, and where its results are.

:class:`~airflow_batch_provider.plugins.plugin.OpenAIBatchPlugin` registers both through the
provider info (``plugins``). Every endpoint asks the API server's auth manager, per DAG.
"""
