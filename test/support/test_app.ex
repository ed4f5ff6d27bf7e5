defmodule Fenix.TestEndpoint do
  @moduledoc false
  # The endpoint ExUnit tests run against; its callbacks report to the test process
  # whose pid is given in the connect params (`test_pid`).
  use Fenix.Endpoint, otp_app: :fenix

  @connect_info [:peer_data, :x_headers, :trace_context_headers, :sec_websocket_headers, :uri, :user_agent, :auth_token, region: "test"]
  socket "/socket", Fenix.TestSocket, websocket: [timeout: 60_000, max_channels: 5, max_frame_size: 4096, connect_info: @connect_info]
  socket "/short", Fenix.TestSocket, websocket: [timeout: 200]
  socket "/lp", Fenix.TestSocket, websocket: [connect_info: [:auth_token]], longpoll: [window_ms: 300]
  socket "/origins", Fenix.TestSocket, websocket: [check_origin: ["//*.example.com", "https://exact.org", "//any.net:8080"]]
  socket "/same-host", Fenix.TestSocket, websocket: [check_origin: :conn]
  socket "/any-origin", Fenix.TestSocket, websocket: [check_origin: false]
  socket "/mfa-origin", Fenix.TestSocket, websocket: [check_origin: {Fenix.TestSocket, :origin_allowed?, ["ok.io"]}]
  # Custom transports (test/support/test_transport.ex).
  socket "/transport", Fenix.TestTransport,
    websocket: [max_frame_size: 4096, max_unhandled_messages: 4, connect_info: [:peer_data, region: "test"]]

  socket "/transport-short", Fenix.TestTransport, websocket: [timeout: 200]
  # Without handle_control/2.
  socket "/transport-plain", Fenix.Conformance.EchoSocket, websocket: true
end

defmodule Fenix.TestPresence do
  @moduledoc false
  use Fenix.Presence, otp_app: :fenix, endpoint: Fenix.TestEndpoint, max_meta_bytes: 1024
end

defmodule Fenix.TestFetchPresence do
  @moduledoc false
  # A presence module with every optional callback: fetch/2 adds a "user" to each
  # presence; handle_metas/4 reports each diff to the process registered as
  # :fenix_presence_listener, and counts them in its state.
  use Fenix.Presence, otp_app: :fenix, endpoint: Fenix.TestEndpoint

  @impl true
  def fetch(_topic, presences) do
    for {key, %{metas: metas}} <- presences, into: %{}, do: {key, %{metas: metas, user: "user " <> key}}
  end

  @impl true
  def init(opts), do: {:ok, %{diffs: 0, opts: opts}}

  @impl true
  def handle_metas(topic, diff, presences, state) do
    if listener = Process.whereis(:fenix_presence_listener), do: send(listener, {:handle_metas, topic, diff, presences, state})
    {:ok, %{state | diffs: state.diffs + 1}}
  end
end

defmodule Fenix.TestSocket do
  @moduledoc false
  use Fenix.Socket

  channel "test:*", Fenix.TestChannel
  channel "exact", Fenix.TestChannel
  channel "presence_out:*", Fenix.TestPresenceOutChannel
  channel "assigned:*", Fenix.TestChannel, assigns: %{route: "assigned", user_id: "from route"}

  @impl true
  def connect(%{"deny" => "error"}, _socket, _info), do: {:error, :denied}
  def connect(%{"deny" => "raise"}, _socket, _info), do: raise("connect crashed on purpose")

  def connect(%{"report" => "transport"} = params, socket, info) do
    test_pid = params |> Map.fetch!("test_pid") |> String.to_charlist() |> :erlang.list_to_pid()
    send(test_pid, {:connected, socket.transport, info})
    {:ok, assign(socket, user_id: nil)}
  end

  def connect(params, socket, info) do
    test_pid = params |> Map.fetch!("test_pid") |> String.to_charlist() |> :erlang.list_to_pid()
    send(test_pid, {:connect_info, info})
    {:ok, assign(socket, test_pid: test_pid, user_id: params["user_id"])}
  end

  @doc false
  def origin_allowed?(%URI{host: host}, allowed), do: host == allowed

  @impl true
  def id(%{assigns: %{user_id: nil}}), do: nil
  def id(%{assigns: %{user_id: id}}), do: "user:" <> id
end

defmodule Fenix.TestChannel do
  @moduledoc false
  use Fenix.Channel

  intercept ["out"]

  @impl true
  def join("test:refuse", _payload, _socket), do: {:error, %{reason: "nope"}}
  def join("test:bad_return", _payload, _socket), do: :what

  def join(topic, payload, socket) do
    send(socket.assigns.test_pid, {:joined, topic, payload, self()})
    {:ok, %{topic: topic}, assign(socket, :joined_with, payload)}
  end

  @impl true
  def handle_in("ping", payload, socket), do: {:reply, {:ok, payload}, socket}

  def handle_in("slow", payload, socket) do
    Process.sleep(1)
    {:reply, {:ok, payload}, socket}
  end
  def handle_in("status_only", _payload, socket), do: {:reply, :ok, socket}
  def handle_in("custom_status", payload, socket), do: {:reply, {:unauthorized, payload}, socket}
  def handle_in("assigns", _payload, socket), do: {:reply, {:ok, %{joined_with: socket.assigns.joined_with}}, socket}

  def handle_in("refs", _payload, socket) do
    send(socket.assigns.test_pid, {:refs, socket.join_ref, socket.ref})
    {:reply, :ok, socket}
  end

  def handle_in("binary_reply", _payload, socket), do: {:reply, {:ok, {:binary, <<1, 2>>}}, socket}

  def handle_in("reply_later", _payload, socket) do
    send(socket.assigns.test_pid, {:socket_ref, socket_ref(socket)})
    {:noreply, socket}
  end

  def handle_in("broadcast", payload, socket) do
    broadcast!(socket, "b", payload)
    {:noreply, socket}
  end

  def handle_in("broadcast_from", payload, socket) do
    broadcast_from!(socket, "b", payload)
    {:noreply, socket}
  end

  # Subscribes the channel process to another topic: its broadcasts are relayed.
  def handle_in("subscribe", %{"topic" => topic}, socket) do
    :ok = Fenix.TestEndpoint.subscribe(topic)
    {:reply, :ok, socket}
  end

  def handle_in("stop_shutdown", _payload, socket), do: {:stop, {:shutdown, :bye}, socket}
  def handle_in("stop_reply", _payload, socket), do: {:stop, :normal, {:ok, %{bye: true}}, socket}
  def handle_in("stop_abnormal", _payload, socket), do: {:stop, :oops, socket}
  def handle_in("raise", _payload, _socket), do: raise("handle_in crashed on purpose")
  def handle_in("bad_return", _payload, _socket), do: :what

  # Pushes the topic's presences as listed, after "then": "track" (the topic changes
  # between the list and the push) or "change" (the list itself is changed).
  def handle_in("presence_state", %{"then" => then}, socket) do
    presences = Fenix.TestPresence.list(socket)

    presences =
      case then do
        "track" -> tap(presences, fn _ -> {:ok, _} = Fenix.TestPresence.track(socket, "late", %{}) end)
        "change" -> Map.put(presences, "extra", %{metas: []})
        _ -> presences
      end

    push(socket, "presence_state", presences)
    {:reply, :ok, socket}
  end

  def handle_in("push_state", %{"fetch" => fetch?}, socket) do
    presence = if fetch?, do: Fenix.TestFetchPresence, else: Fenix.TestPresence
    :ok = presence.push_state(socket)
    {:reply, :ok, socket}
  end

  def handle_in("bad_payload", _payload, socket) do
    push(socket, "x", %{pid: self()})
    {:noreply, socket}
  end

  @impl true
  def handle_out("out", payload, socket) do
    send(socket.assigns.test_pid, {:handle_out, payload})
    push(socket, "out", Map.put(payload, "by", socket.assigns.user_id))
    {:noreply, socket}
  end

  @impl true
  def handle_call(:assigns, _from, socket), do: {:reply, socket.assigns, socket}
  def handle_call(:later, from, socket), do: {:noreply, assign(socket, :caller, from)}
  def handle_call(:answer, _from, socket) do
    GenServer.reply(socket.assigns.caller, :answered_later)
    {:reply, :ok, socket}
  end

  def handle_call(:stop, _from, socket), do: {:stop, {:shutdown, :called}, socket}

  def handle_call({:try_push, event, payload}, _from, socket) do
    {:reply, push(socket, event, payload), socket}
  rescue
    error in ArgumentError -> {:reply, {:raised, Exception.message(error)}, socket}
  end

  @impl true
  def handle_cast({:push, event, payload}, socket) do
    push(socket, event, payload)
    {:noreply, socket}
  end

  @impl true
  def handle_info({:push, event, payload}, socket) do
    push(socket, event, payload)
    {:noreply, socket}
  end

  def handle_info(%Fenix.Socket.Broadcast{topic: topic, event: event, payload: payload}, socket) do
    push(socket, "relayed", %{topic: topic, event: event, payload: payload})
    {:noreply, socket}
  end

  @impl true
  def terminate(reason, socket) do
    send(socket.assigns.test_pid, {:terminate, socket.topic, reason})
  end
end

defmodule Fenix.TestPresenceOutChannel do
  @moduledoc false
  # Intercepts presence_diff: tells the test what handle_out got, and pushes it on.
  use Fenix.Channel

  intercept ["presence_diff"]

  @impl true
  def join(topic, _payload, socket), do: {:ok, %{topic: topic}, socket}

  @impl true
  def handle_out("presence_diff", diff, socket) do
    send(socket.assigns.test_pid, {:presence_diff_out, diff})
    push(socket, "presence_diff", diff)
    {:noreply, socket}
  end
end
