"""The REST protocol of OpenText Workflow Service behind the sync and async hooks.

Plain Python shared by both hooks: connection settings, retries, answers and errors, HAL paging, typed
variables, BPMN model files and the decision probe. Only the transport (requests or aiohttp) is the hooks'.
"""
