"""Model backends: samplers that turn prompts into candidate generations."""
