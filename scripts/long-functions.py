#!/usr/bin/env python3
"""Lists Swift functions, initialisers and closures-as-properties longer than a bound.

Usage: python3 scripts/long-functions.py [--max 80] [paths...]   (default: Sources)
Counts lines from the declaration to its closing brace, matching braces outside string
literals and comments. Exits 1 when any function is over the bound, so CI can hold the line.
"""
import os
import re
import sys

DECLARATION = re.compile(r'^\s*(?:@\w+(?:\([^)]*\))?\s+)*(?:(?:public|private|fileprivate|internal|package|static|class|final|override|mutating|nonisolated|@discardableResult|@inlinable)\s+)*(func\s+[^\s(<]+|init[?!]?\s*[(<]|deinit\b)')


def strip(line, in_block):
    """The line without string literals and comments; whether a block comment is still open."""
    out, i = [], 0
    while i < len(line):
        if in_block:
            end = line.find('*/', i)
            if end < 0:
                return ''.join(out), True
            i, in_block = end + 2, False
        elif line.startswith('//', i):
            break
        elif line.startswith('/*', i):
            in_block, i = True, i + 2
        elif line[i] == '"':
            j = i + 1
            while j < len(line) and line[j] != '"':
                j += 2 if line[j] == '\\' else 1
            i = j + 1
        else:
            out.append(line[i])
            i += 1
    return ''.join(out), in_block


def functions(path):
    """(length, name, first line) of every function with a body in the file."""
    with open(path, encoding='utf-8') as handle:
        lines = handle.readlines()
    in_block, multiline, stack, found = False, False, [], []
    depth, pending, parens = 0, None, 0
    for number, raw in enumerate(lines, 1):
        if raw.count('"""') % 2 == 1:
            multiline = not multiline
            continue
        if multiline:
            continue
        code, in_block = strip(raw, in_block)
        match = DECLARATION.match(code)
        if match:
            pending, parens = (match.group(1).strip(), number), 0
        for char in code:
            if pending and char in '()':
                parens += 1 if char == '(' else -1
            if char == '{':
                if pending and parens == 0:
                    stack.append((pending[0], pending[1], depth))
                    pending = None
                depth += 1
            elif char == '}':
                depth -= 1
                if stack and stack[-1][2] == depth:
                    name, start, _ = stack.pop()
                    found.append((number - start + 1, name, start))
        # A declaration whose signature ended without a body (a protocol requirement).
        if pending and parens == 0 and not code.rstrip().endswith(CONTINUATIONS):
            pending = None
    return found


CONTINUATIONS = ('->', ',', 'throws', 'rethrows', 'async', '&', ':', '(')


def main(argv):
    bound, paths = 80, []
    args = iter(argv)
    for arg in args:
        if arg == '--max':
            bound = int(next(args))
        else:
            paths.append(arg)
    over = []
    for root in paths or ['Sources']:
        for directory, _, names in os.walk(root):
            for name in sorted(names):
                if name.endswith('.swift'):
                    path = os.path.join(directory, name)
                    over += [(length, f'{path}:{start}', fn) for length, fn, start in functions(path) if length > bound]
    for length, where, name in sorted(over, reverse=True):
        print(f'{length:5d}  {where}  {name}')
    return 1 if over else 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
