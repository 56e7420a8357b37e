"""openscore.router: the front end for many services (azureml-fe's counterpart): routing, auth, rollout, scaling.
May import `openscore` (shared pieces) only: replicas are `openscore serve` processes, never imported code.
"""
