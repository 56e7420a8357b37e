"""Kubernetes for openscore: the small client interface over the API server (`client`), the custom resource
that holds a service's desired state (`crd`), the router's state store and compute target over the cluster
(`object_store`, `target`), instance types and SKU fit checks (`instance_types`), the pods' manifests
(`manifests`), Azure's service states from what the cluster reports (`status`), and what `openscore cluster
install` applies (`install`). Needs the `kubernetes` extra; the scoring server never imports it.
"""
