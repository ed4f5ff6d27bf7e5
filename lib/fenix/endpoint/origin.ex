defmodule Fenix.Endpoint.Origin do
  @moduledoc false
  # check_origin, as Phoenix's socket transport does it: which web pages may open a
  # socket. A browser sends the page's origin in the `Origin` header of the upgrade; a
  # connection whose origin is not allowed is refused with 403 before connect/3 runs,
  # and logged. Requests without an `Origin` (not from a browser) are allowed, as in
  # Phoenix.
  #
  # The check, from the socket's `websocket: [check_origin: ...]`, else the endpoint's
  # `check_origin:` config, else `true`:
  #
  #   * true - the origin's host is the endpoint's `url: [host: ...]` ("localhost"
  #     unless configured, as in Phoenix);
  #   * false - every origin;
  #   * a list - `"https://example.com"`, `"//example.com"` (any scheme and port),
  #     `"//*.example.com"` (the host and its subdomains), `"//example.com:8080"`:
  #     the origin matches one on each part the entry names;
  #   * :conn - the origin's scheme, host and port are the request's own;
  #   * {module, function, args} - `apply(module, function, [origin_uri | args])`.

  require Logger

  @type check :: boolean() | :conn | {module(), atom(), list()} | [{String.t() | nil, String.t(), pos_integer() | nil}]

  @doc "The check of a `check_origin` value, origin lists parsed; raises on anything else."
  @spec parse!(term()) :: check()
  def parse!(check) when is_boolean(check) or check == :conn, do: check
  def parse!({module, function, args} = mfa) when is_atom(module) and is_atom(function) and is_list(args), do: mfa
  def parse!(origins) when is_list(origins), do: Enum.map(origins, &parse_origin!/1)

  def parse!(other) do
    raise ArgumentError, ":check_origin expects a boolean, a list of origins, :conn or an MFA tuple, got: #{inspect(other)}"
  end

  defp parse_origin!(origin) when is_binary(origin) do
    case URI.parse(origin) do
      %URI{host: host} when host in [nil, ""] ->
        raise ArgumentError,
              "invalid :check_origin origin #{inspect(origin)}: expected one with a host, such as " <>
                ~s("https://example.com", "//another.com:888" or "//*.example.com")

      # "//example.com" parses without a scheme or port: either may be anything.
      %URI{scheme: scheme, host: host, port: port} ->
        {scheme, host, port}
    end
  end

  defp parse_origin!(other), do: raise(ArgumentError, "invalid :check_origin origin #{inspect(other)}: expected a string")

  @doc """
  True when `origin` (the header, or nil) may connect: `url_host` is the endpoint's
  configured host, `request` gives the upgrade request's `URI` (scheme, host, port),
  called only for `:conn`.
  """
  @spec allowed?(check(), String.t() | nil, String.t() | nil, (-> URI.t())) :: boolean()
  def allowed?(check, origin, url_host, request)
  def allowed?(false, _origin, _url_host, _request), do: true
  def allowed?(_check, nil, _url_host, _request), do: true
  def allowed?(check, origin, url_host, request), do: origin_allowed?(check, URI.parse(origin), url_host, request)

  defp origin_allowed?({module, function, args}, uri, _url_host, _request), do: apply(module, function, [uri | args]) == true

  defp origin_allowed?(:conn, uri, _url_host, request) do
    %URI{host: host, scheme: scheme, port: port} = request.()
    uri.host == host and uri.scheme == scheme and uri.port == port
  end

  defp origin_allowed?(_check, %URI{host: nil}, _url_host, _request), do: false
  defp origin_allowed?(true, uri, url_host, _request), do: matches?(uri.host, url_host)

  defp origin_allowed?(origins, uri, _url_host, _request) when is_list(origins) do
    Enum.any?(origins, fn {scheme, host, port} ->
      matches?(uri.scheme, scheme) and matches?(uri.port, port) and host_matches?(uri.host, host)
    end)
  end

  # A part the allowed origin leaves out matches anything.
  defp matches?(_value, nil), do: true
  defp matches?(value, allowed), do: value == allowed

  defp host_matches?(host, "*." <> domain), do: host == domain or String.ends_with?(host, "." <> domain)
  defp host_matches?(host, allowed), do: host == allowed

  @doc "Logs a refused origin, saying how to allow it."
  @spec log_refused(module(), String.t()) :: :ok
  def log_refused(handler, origin) do
    Logger.error("""
    Refused a #{inspect(handler)} connection from origin #{inspect(origin)} (check_origin).

    The page's host is not the one the endpoint is configured for (`url: [host: ...]`,
    "localhost" by default), nor one the check allows. Either set the endpoint's
    `url: [host: ...]` to the host the pages are served from, or give `check_origin:`
    (to the endpoint, or to the socket's `websocket:` options) the origins to allow:

        check_origin: ["https://example.com", "//another.com:888", "//*.example.com"]

    (or `:conn` for the request's own host, or `false` in development).
    """)
  end
end
