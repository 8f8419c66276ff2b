"""A local stand-in for OpenText Workflow Service: the real REST API (token endpoint, HAL lists, error
shapes) executing BPMN models on SpiffWorkflow, with a reviewer inbox, a reviewer CLI, fault injection
and a movable clock. See README.md in this folder."""
