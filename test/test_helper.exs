{:ok, _} = Fenix.TestEndpoint.start_link(http: [port: 0], static: [from: "test/fixtures/static"])
{:ok, _} = Fenix.TestPresence.start_link(tick: 30)
{:ok, _} = Fenix.TestFetchPresence.start_link(tick: 30, greeting: "hi")
ExUnit.start(capture_log: true)
