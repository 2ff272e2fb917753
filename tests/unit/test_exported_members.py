import faas
import faas.client


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


def test_the_client_surface_is_pinned() -> None:
    assert sorted(faas.client.__all__) == sorted(
        ["DEFAULT_EXCLUDE", "MANIFEST_NAME", "FaasClient", "Manifest", "is_excluded",
         "load_manifest", "pack_function_folder", "parse_manifest", "resolve_url"])
    methods = sorted(n for n in vars(faas.client.FaasClient) if not n.startswith("_"))
    assert methods == sorted(
        ["cancel_invocation", "close", "delete_function", "deploy", "get_function",
         "get_version", "invocation", "invocations", "invoke", "invoke_async",
         "list_functions"])
