"""The lab: training, export, evaluation and the studies. Above the runtime: nothing in the runtime
(api, catalog, search, models, server, images, tagging) imports it; the CLI reaches it through
`models export`, `train`, `eval` and `study`."""
