defmodule Fenix.Test.WSClient do
  @moduledoc false
  # A small RFC 6455 client over :gen_tcp for tests (Elixir's standard library has
  # none). Frames are sent masked, as a client must; replies are read one frame at
  # a time, so tests can assert exact wire frames. Over TLS too: `:ssl` has the same
  # send/recv/close as `:gen_tcp`.

  import Bitwise

  defstruct [:socket, transport: :gen_tcp, buffer: <<>>]

  @type t :: %__MODULE__{}

  @doc """
  Opens a WebSocket to `path` (with its query). Returns `{:ok, client}` or
  `{:error, {:http, status}}`. `tls: ssl_options` connects over TLS (`wss://`).
  """
  def connect(port, path, headers \\ [], opts \\ []) do
    {transport, socket} = open(port, Keyword.get(opts, :tls))
    key = Base.encode64(:crypto.strong_rand_bytes(16))

    # A "host" among `headers` replaces the default one.
    {host, headers} = List.keytake(headers, "host", 0) || {{"host", "127.0.0.1:#{port}"}, headers}

    request = [
      "GET #{path} HTTP/1.1\r\nhost: #{elem(host, 1)}\r\nupgrade: websocket\r\nconnection: Upgrade\r\n",
      "sec-websocket-key: #{key}\r\nsec-websocket-version: 13\r\n",
      Enum.map(headers, fn {k, v} -> "#{k}: #{v}\r\n" end),
      "\r\n"
    ]

    :ok = transport.send(socket, request)
    {status, response_headers, rest} = read_response(transport, socket, <<>>)

    if status == 101 do
      expected = Base.encode64(:crypto.hash(:sha, key <> "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
      ^expected = response_headers["sec-websocket-accept"]
      {:ok, %__MODULE__{socket: socket, transport: transport, buffer: rest}, response_headers}
    else
      transport.close(socket)
      {:error, {:http, status, response_headers}}
    end
  end

  @socket_options [:binary, active: false, packet: :raw]

  defp open(port, nil) do
    {:ok, socket} = :gen_tcp.connect(~c"127.0.0.1", port, @socket_options)
    {:gen_tcp, socket}
  end

  defp open(port, tls) do
    {:ok, socket} = :ssl.connect(~c"127.0.0.1", port, @socket_options ++ tls, 5_000)
    {:ssl, socket}
  end

  @doc "Sends a raw HTTP request and returns `{status, headers, body}`."
  def http_get(port, path) do
    {:ok, socket} = :gen_tcp.connect(~c"127.0.0.1", port, [:binary, active: false, packet: :raw])
    :ok = :gen_tcp.send(socket, "GET #{path} HTTP/1.1\r\nhost: 127.0.0.1\r\n\r\n")
    {status, headers, rest} = read_response(:gen_tcp, socket, <<>>)
    length = String.to_integer(Map.get(headers, "content-length", "0"))
    body = read_exactly(socket, rest, length)
    :gen_tcp.close(socket)
    {status, headers, body}
  end

  defp read_response(transport, socket, acc) do
    case :binary.split(acc, "\r\n\r\n") do
      [head, rest] ->
        [status_line | lines] = String.split(head, "\r\n")
        [_, status | _] = String.split(status_line, " ")

        headers =
          Map.new(lines, fn line ->
            [k, v] = String.split(line, ":", parts: 2)
            {String.downcase(k), String.trim(v)}
          end)

        {String.to_integer(status), headers, rest}

      [_] ->
        {:ok, data} = transport.recv(socket, 0, 5_000)
        read_response(transport, socket, acc <> data)
    end
  end

  defp read_exactly(_socket, acc, length) when byte_size(acc) >= length, do: binary_part(acc, 0, length)

  defp read_exactly(socket, acc, length) do
    case :gen_tcp.recv(socket, 0, 5_000) do
      {:ok, data} -> read_exactly(socket, acc <> data, length)
      {:error, _} -> acc
    end
  end

  @doc "Sends a text frame."
  def send_text(%__MODULE__{} = client, text), do: send_frame(client, 0x1, text)

  @doc "Sends a binary frame."
  def send_binary(%__MODULE__{} = client, data), do: send_frame(client, 0x2, data)

  @doc "Sends a frame with any opcode and fin bit."
  def send_frame(%__MODULE__{socket: socket, transport: transport}, opcode, payload, fin \\ true) do
    payload = IO.iodata_to_binary(payload)
    mask = :crypto.strong_rand_bytes(4)
    fin_bit = if fin, do: 0x80, else: 0

    length =
      case byte_size(payload) do
        n when n < 126 -> <<1::1, n::7>>
        n when n < 65_536 -> <<1::1, 126::7, n::16>>
        n -> <<1::1, 127::7, n::64>>
      end

    transport.send(socket, [<<fin_bit ||| opcode>>, length, mask, mask(payload, mask)])
  end

  defp mask(payload, <<a, b, c, d>>) do
    key = :binary.copy(<<a, b, c, d>>, div(byte_size(payload), 4) + 1)
    :crypto.exor(payload, binary_part(key, 0, byte_size(payload)))
  end

  @doc """
  Receives the next frame: `{:text, data}`, `{:binary, data}`, `{:close, code, reason}`,
  `{:pong, data}`, `:closed` (TCP closed) or `:timeout`.
  """
  def recv(%__MODULE__{} = client, timeout \\ 2_000) do
    case parse(client.buffer) do
      {:ok, frame, rest} ->
        {frame, %{client | buffer: rest}}

      :more ->
        case client.transport.recv(client.socket, 0, timeout) do
          {:ok, data} -> recv(%{client | buffer: client.buffer <> data}, timeout)
          {:error, :timeout} -> {:timeout, client}
          {:error, _} -> {:closed, client}
        end
    end
  end

  defp parse(<<_fin::1, 0::3, opcode::4, 0::1, len::7, rest::binary>>) when len < 126,
    do: take(opcode, len, rest)

  defp parse(<<_fin::1, 0::3, opcode::4, 0::1, 126::7, len::16, rest::binary>>), do: take(opcode, len, rest)
  defp parse(<<_fin::1, 0::3, opcode::4, 0::1, 127::7, len::64, rest::binary>>), do: take(opcode, len, rest)
  defp parse(_), do: :more

  defp take(opcode, len, data) when byte_size(data) >= len do
    <<payload::binary-size(len), rest::binary>> = data
    {:ok, frame(opcode, payload), rest}
  end

  defp take(_opcode, _len, _data), do: :more

  defp frame(0x1, payload), do: {:text, payload}
  defp frame(0x2, payload), do: {:binary, payload}
  defp frame(0x8, <<code::16, reason::binary>>), do: {:close, code, reason}
  defp frame(0x8, <<>>), do: {:close, nil, ""}
  defp frame(0xA, payload), do: {:pong, payload}

  @doc "Closes the TCP connection abruptly."
  def close(%__MODULE__{socket: socket, transport: transport}), do: transport.close(socket)
end
