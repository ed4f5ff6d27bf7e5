defmodule Fenix.Endpoint.HTTPSTest do
  # The `https:` listener end to end: a certificate made for the run, an endpoint with
  # it, and a WebSocket client over OTP's :ssl that verifies the server against the CA.
  use ExUnit.Case, async: false

  import Fenix.Test.Client, only: [assert_frame: 2, push: 2]

  alias Fenix.Test.{Cert, Frames, WSClient}

  defmodule Endpoint do
    use Fenix.Endpoint, otp_app: :fenix
    socket "/socket", Fenix.TestSocket, websocket: [connect_info: [:uri]]
  end

  setup_all do
    {:ok, _} = Application.ensure_all_started(:ssl)
    dir = Path.join(System.tmp_dir!(), "fenix-https-test-#{System.unique_integer([:positive])}")
    on_exit(fn -> File.rm_rf!(dir) end)
    %{cert: Cert.generate!(dir)}
  end

  # The run's certificate is its own issuer, which :ssl reports as `selfsigned_peer`
  # even when it is among the cacerts: that one certificate is accepted, nothing else.
  defp tls(cert) do
    [{:Certificate, ours, _}] = cert.cacertfile |> File.read!() |> :public_key.pem_decode()

    accept_ours = fn
      otp_cert, {:bad_cert, :selfsigned_peer} = reason, state ->
        if :public_key.pkix_encode(:OTPCertificate, otp_cert, :otp) == ours, do: {:valid, state}, else: {:fail, reason}

      _cert, {:bad_cert, _} = reason, _state ->
        {:fail, reason}

      _cert, {:extension, _}, state ->
        {:unknown, state}

      _cert, _valid, state ->
        {:valid, state}
    end

    [verify: :verify_peer, verify_fun: {accept_ours, nil}, server_name_indication: ~c"localhost"]
  end

  defp https(cert, extra \\ []), do: Keyword.merge([port: 0, certfile: cert.certfile, keyfile: cert.keyfile], extra)

  defp connect(port, opts) do
    query = URI.encode_query(%{"test_pid" => to_string(:erlang.pid_to_list(self())), "vsn" => "2.0.0"})
    WSClient.connect(port, "/socket/websocket?#{query}", [{"host", "localhost:#{port}"}], opts)
  end

  defp join_and_echo(client) do
    client = push(client, Frames.client(:v2, "1", "1", "test:tls", "phx_join", "{}"))
    client = assert_frame(client, Frames.reply(:v2, "1", "1", "test:tls", "ok", ~s({"topic":"test:tls"})))
    client = push(client, Frames.client(:v2, "1", "2", "test:tls", "ping", ~s({"over":"tls"})))
    assert_frame(client, Frames.reply(:v2, "1", "2", "test:tls", "ok", ~s({"over":"tls"})))
  end

  test "https: alone serves the sockets over TLS; the connect info's uri says https", %{cert: cert} do
    start_supervised!({Endpoint, https: https(cert)})
    port = Endpoint.https_port()
    assert Endpoint.port() == port, "the only listener"

    {:ok, client, _headers} = connect(port, tls: tls(cert))
    assert_receive {:connect_info, %{uri: %URI{scheme: "https", host: "localhost", port: ^port}}}
    join_and_echo(client)
  end

  test "http: and https: serve the same sockets", %{cert: cert} do
    start_supervised!({Endpoint, http: [port: 0], https: https(cert, cipher_suite: :strong)})
    assert Endpoint.port() != Endpoint.https_port()

    {:ok, secure, _} = connect(Endpoint.https_port(), tls: tls(cert) ++ [versions: [:"tlsv1.3"]])
    {:ok, plain, _} = connect(Endpoint.port(), [])
    assert_receive {:connect_info, %{uri: %URI{scheme: "https"}}}
    assert_receive {:connect_info, %{uri: %URI{scheme: "http"}}}
    join_and_echo(secure)
    join_and_echo(plain)
  end

  test ":strong refuses TLS 1.2, :compatible takes it", %{cert: cert} do
    tls12 = tls(cert) ++ [versions: [:"tlsv1.2"]]
    port = start_https(cert, cipher_suite: :strong)
    assert {:error, _} = :ssl.connect(~c"127.0.0.1", port, [active: false] ++ tls12, 5_000)
    stop_supervised!(Endpoint)

    port = start_https(cert, cipher_suite: :compatible)
    {:ok, client, _} = connect(port, tls: tls12)
    join_and_echo(client)
  end

  test "a relative path is relative to the otp_app's directory, as in Plug.SSL", %{cert: cert} do
    app_dir = Application.app_dir(:fenix)
    relative = Path.join("tls-test-#{System.unique_integer([:positive])}", "cert.pem")
    File.mkdir_p!(Path.join(app_dir, Path.dirname(relative)))
    on_exit(fn -> File.rm_rf!(Path.join(app_dir, Path.dirname(relative))) end)
    File.cp!(cert.certfile, Path.join(app_dir, relative))

    port = start_https(cert, certfile: relative, otp_app: :fenix)
    {:ok, client, _} = connect(port, tls: tls(cert))
    join_and_echo(client)
  end

  test "a missing file, an unknown cipher suite or a missing key is refused before anything starts", %{cert: cert} do
    for {https, message} <- [
          {https(cert, certfile: "/nonexistent/cert.pem"), ~r"the file /nonexistent/cert.pem required by the :https option :certfile either does not exist"},
          {https(cert, cipher_suite: :weak), ~r/unknown :cipher_suite named :weak/},
          {[port: 0, certfile: cert.certfile], ~r/the :https endpoint option is missing :keyfile/},
          {https(cert, prot: 1), ~r/unknown keys \[:prot\]/}
        ] do
      assert_raise ArgumentError, message, fn -> Endpoint.start_link(https: https) end
      assert Process.whereis(Endpoint) == nil
    end
  end

  test "a file that is no certificate fails the start with a clear error", %{cert: cert} do
    Process.flag(:trap_exit, true)
    # The key where the certificate should be.
    assert {:error, reason} = Endpoint.start_link(https: https(cert, certfile: cert.keyfile))
    assert {:shutdown, {:failed_to_start_child, :engine, {:shutdown, {:failed_to_start_child, :dispatcher, {:endpoint_start_failed, {:tls, message}}}}}} = reason
    assert message =~ "certfile"
    assert message =~ cert.keyfile
  end

  defp start_https(cert, extra) do
    start_supervised!({Endpoint, https: https(cert, extra)})
    Endpoint.https_port()
  end
end
