defmodule Fenix.Test.JSON do
  @moduledoc false
  # A minimal JSON reader (RFC 8259) for the shared test vectors: Elixir 1.14 has no
  # JSON module and hex.pm (Jason) is out of reach. Objects become maps with string
  # keys, arrays lists, true/false/null true/false/nil, as Jason decodes them.
  # Anything malformed raises.

  @doc "Decodes `json`, raising ArgumentError if it is not one JSON value."
  def decode!(json) when is_binary(json) do
    {value, rest} = json |> skip() |> value()
    if skip(rest) == "", do: value, else: fail(rest)
  end

  defp value("{" <> rest) do
    case skip(rest) do
      "}" <> rest -> {%{}, rest}
      rest -> members(rest, %{})
    end
  end

  defp value("[" <> rest) do
    case skip(rest) do
      "]" <> rest -> {[], rest}
      rest -> elements(rest, [])
    end
  end

  defp value("\"" <> rest), do: string(rest, [])
  defp value("true" <> rest), do: {true, rest}
  defp value("false" <> rest), do: {false, rest}
  defp value("null" <> rest), do: {nil, rest}
  defp value(<<c, _::binary>> = json) when c == ?- or c in ?0..?9, do: number(json)
  defp value(json), do: fail(json)

  defp members("\"" <> rest, acc) do
    {key, rest} = string(rest, [])
    {value, rest} = rest |> skip() |> expect(":") |> skip() |> value()
    acc = Map.put(acc, key, value)

    case skip(rest) do
      "," <> rest -> members(skip(rest), acc)
      "}" <> rest -> {acc, rest}
      rest -> fail(rest)
    end
  end

  defp members(json, _acc), do: fail(json)

  defp elements(json, acc) do
    {value, rest} = value(json)

    case skip(rest) do
      "," <> rest -> elements(skip(rest), [value | acc])
      "]" <> rest -> {Enum.reverse([value | acc]), rest}
      rest -> fail(rest)
    end
  end

  defp string("\"" <> rest, acc), do: {acc |> Enum.reverse() |> IO.iodata_to_binary(), rest}

  defp string("\\u" <> <<hex::binary-4, rest::binary>>, acc) do
    case {String.to_integer(hex, 16), rest} do
      # A character outside the BMP, as a UTF-16 surrogate pair.
      {high, "\\u" <> <<low::binary-4, rest::binary>>} when high in 0xD800..0xDBFF ->
        code = 0x10000 + (high - 0xD800) * 0x400 + (String.to_integer(low, 16) - 0xDC00)
        string(rest, [<<code::utf8>> | acc])

      {code, rest} ->
        string(rest, [<<code::utf8>> | acc])
    end
  end

  defp string("\\" <> <<c, rest::binary>>, acc), do: string(rest, [escape(c) | acc])
  defp string(<<c, rest::binary>>, acc) when c >= 0x20, do: string(rest, [c | acc])
  defp string(json, _acc), do: fail(json)

  defp escape(?"), do: ?"
  defp escape(?\\), do: ?\\
  defp escape(?/), do: ?/
  defp escape(?b), do: ?\b
  defp escape(?f), do: ?\f
  defp escape(?n), do: ?\n
  defp escape(?r), do: ?\r
  defp escape(?t), do: ?\t
  defp escape(c), do: fail(<<c>>)

  defp number(json) do
    [text | _groups] = Regex.run(~r/\A-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?/, json)
    rest = binary_part(json, byte_size(text), byte_size(json) - byte_size(text))

    if String.contains?(text, [".", "e", "E"]) do
      {text |> Float.parse() |> elem(0), rest}
    else
      {String.to_integer(text), rest}
    end
  end

  defp skip(<<c, rest::binary>>) when c in [?\s, ?\t, ?\r, ?\n], do: skip(rest)
  defp skip(json), do: json

  defp expect(json, token) do
    if String.starts_with?(json, token),
      do: binary_part(json, byte_size(token), byte_size(json) - byte_size(token)),
      else: fail(json)
  end

  defp fail(rest), do: raise(ArgumentError, "invalid JSON at: #{inspect(String.slice(rest, 0, 20))}")
end
