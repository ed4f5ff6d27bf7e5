defmodule Fenix.Endpoint.HTTPS do
  @moduledoc false
  # The `https:` option, checked before anything starts, as Plug.SSL checks it: the
  # certificate and key files must exist (a relative path is relative to the `otp_app`
  # directory: the one given, or the endpoint's), and `cipher_suite` is `:strong`,
  # `:compatible` or left out. The engine reads the files and reports what it cannot
  # use (see Fenix.Endpoint, "HTTPS").

  @tls_options [:certfile, :keyfile, :cipher_suite, :otp_app]
  @cipher_suites [:strong, :compatible]

  @doc """
  Splits the `https:` option into the listener's own options (ip, port, limits) and
  the TLS options for the engine: `{listener, %{certfile, keyfile, cipher_suite}}`,
  or `{nil, nil}` when there is no `https:`.
  """
  def validate!(nil, _otp_app), do: {nil, nil}

  def validate!(https, endpoint_otp_app) when is_list(https) do
    {tls, listener} = Keyword.split(https, @tls_options)
    otp_app = Keyword.get(tls, :otp_app, endpoint_otp_app)

    tls = %{
      certfile: file!(tls, :certfile, otp_app),
      keyfile: file!(tls, :keyfile, otp_app),
      cipher_suite: cipher_suite!(Keyword.get(tls, :cipher_suite))
    }

    {listener, tls}
  end

  def validate!(other, _otp_app) do
    raise ArgumentError, "the :https endpoint option must be a keyword list, got: #{inspect(other)}"
  end

  defp file!(tls, key, otp_app) do
    path =
      case Keyword.fetch(tls, key) do
        {:ok, path} when is_binary(path) -> absolute(path, otp_app)
        {:ok, other} -> raise ArgumentError, "the :https option #{inspect(key)} must be a path, got: #{inspect(other)}"
        :error -> raise ArgumentError, "the :https endpoint option is missing #{inspect(key)}"
      end

    unless File.regular?(path) do
      raise ArgumentError,
            "the file #{path} required by the :https option #{inspect(key)} either does not exist, " <>
              "or the application does not have permission to access it"
    end

    path
  end

  defp absolute(path, otp_app) do
    case Path.type(path) do
      :absolute -> path
      _relative -> Path.expand(path, Application.app_dir(otp_app))
    end
  end

  defp cipher_suite!(nil), do: nil
  defp cipher_suite!(suite) when suite in @cipher_suites, do: Atom.to_string(suite)

  defp cipher_suite!(other) do
    raise ArgumentError, "unknown :cipher_suite named #{inspect(other)} (expected one of #{inspect(@cipher_suites)})"
  end
end
