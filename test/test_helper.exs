{:ok, _} = Fenix.PubSub.start_link(name: Fenix.TestPubSub)
{:ok, _} = Fenix.TestEndpoint.start_link(http: [port: 0], static: [from: "test/fixtures/static"], pubsub_server: Fenix.TestPubSub)
{:ok, _} = Fenix.TestPresence.start_link(tick: 30)
{:ok, _} = Fenix.TestFetchPresence.start_link(tick: 30, greeting: "hi")
# An app's endpoint as a generated config/test.exs has it (test/support/gen_app.ex).
Application.put_env(:fenix, GenAppWeb.Endpoint, server: false, pubsub_server: GenApp.PubSub, http: [port: 4002])
{:ok, _} = Fenix.PubSub.start_link(name: GenApp.PubSub)
{:ok, _} = GenAppWeb.Endpoint.start_link()
# A loaded machine delays messages more than the 100 ms default; failures only wait longer.
ExUnit.start(capture_log: true, assert_receive_timeout: 1_000)
