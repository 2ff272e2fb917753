import faas


def test_public_names_are_pinned() -> None:
    assert sorted(faas.__all__) == sorted(
        ["AdmissionRejected", "AgentProtocolError", "Availability", "BundleRejected",
         "ExecutionSpec", "Executor",
         "ExecutorUnavailable", "FaasError", "ImageNotFound", "InvocationResult",
         "InvocationTimeout", "InvokeRequest", "Limits", "PayloadTooLarge", "RequestTimeout",
         "SandboxError",
         "ShuttingDown", "UnknownExecutor", "ValidationError", "__version__"])
    for name in faas.__all__:
        assert hasattr(faas, name)


def test_every_error_is_a_faas_error_with_an_http_status() -> None:
    errors = [getattr(faas, n) for n in faas.__all__
              if isinstance(getattr(faas, n), type) and issubclass(getattr(faas, n), Exception)]
    assert all(issubclass(e, faas.FaasError) and 400 <= e.status < 600 for e in errors)
