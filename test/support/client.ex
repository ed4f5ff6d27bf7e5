defmodule Fenix.Test.Client do
  @moduledoc false
  # Helpers over Fenix.Test.WSClient for the ExUnit tests: connect to the test
  # endpoint as the calling test process, join, and assert exact frames.

  import ExUnit.Assertions

  alias Fenix.Test.WSClient

  def port, do: Fenix.TestEndpoint.port()

  @doc "Connects with `params` (the test pid is added); `vsn` picks the serializer."
  def connect!(params \\ %{}, opts \\ []) do
    path = Keyword.get(opts, :path, "/socket")
    params = Map.put(params, "test_pid", :erlang.pid_to_list(self()) |> to_string())
    query = URI.encode_query(params)
    {:ok, client, _headers} = WSClient.connect(port(), "#{path}/websocket?#{query}", Keyword.get(opts, :headers, []))
    client
  end

  @doc "Asserts that the next frame is `expected` (text); returns the client."
  def assert_frame(client, expected, timeout \\ 2_000) do
    {frame, client} = WSClient.recv(client, timeout)
    assert frame == expected
    client
  end

  @doc "Asserts that no frame arrives within `timeout` ms."
  def refute_frame(client, timeout \\ 100) do
    {frame, client} = WSClient.recv(client, timeout)
    assert frame == :timeout
    client
  end

  @doc "Sends a text frame."
  def push(client, text) do
    :ok = WSClient.send_text(client, text)
    client
  end

  @doc "Polls `check` until it is true (a guard against hangs, not a timing assertion)."
  def eventually(check, tries \\ 250) do
    cond do
      check.() -> true
      tries == 0 -> false
      true ->
        Process.sleep(20)
        eventually(check, tries - 1)
    end
  end

  @doc """
  Joins `topic` (vsn 2.0.0, join_ref and ref "1") on the test endpoint and waits until
  the channel is a fan-out target; returns the client.
  """
  def join!(client, topic) do
    push(client, Fenix.Test.Frames.client(:v2, "1", "1", topic, "phx_join", "{}"))
    client = assert_frame(client, Fenix.Test.Frames.reply(:v2, "1", "1", topic, "ok", ~s({"topic":"#{topic}"})))
    engine = Fenix.Endpoint.engine!(Fenix.TestEndpoint)
    assert eventually(fn -> elem(Fenix.Native.endpoint_subscribers(engine, topic), 1) == 1 end)
    client
  end
end
