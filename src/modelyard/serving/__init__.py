"""The model server: ``modelyard serve REF...``.

It reaches the registry only through the SDK (:mod:`modelyard.client`), so it
runs beside a remote registry exactly as it runs beside an embedded one:

- :mod:`~modelyard.serving.loader` resolves a reference, pulls the version's
  files (digest-verified) into a private cache and hands them to a flavor;
- :mod:`~modelyard.serving.flavors` holds one module per model format
  (``load(files, signature) -> Predictor``);
- :mod:`~modelyard.serving.tensors` is the Open Inference Protocol's tensor
  vocabulary (datatypes, shapes) and the signature read from a version;
- :mod:`~modelyard.serving.protocol` decodes and encodes OIP v2 inference
  bodies (JSON and the binary tensor extension);
- :mod:`~modelyard.serving.app` is the ASGI application (health, metadata,
  readiness, infer, ``/metrics``, ``/monitoring``); :mod:`~modelyard.serving.metrics`
  its Prometheus collectors;
- :mod:`~modelyard.serving.monitor` keeps each version's rolling window
  (feature bins against its reference statistics, errors, latency) and
  :mod:`~modelyard.serving.watcher` judges it and sends the drift and
  degradation alerts; :mod:`~modelyard.serving.predlog` is the optional
  prediction log.
"""
