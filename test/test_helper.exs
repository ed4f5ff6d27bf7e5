{:ok, _} = Fenix.TestEndpoint.start_link(http: [port: 0], static: [from: "test/fixtures/static"])
ExUnit.start(capture_log: true)
