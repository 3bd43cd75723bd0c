# Writes the type stubs of pymbrl._core (pybind11-stubgen) into the install tree, at install time so
# that development builds that only compile need no stub generator. Run by install(CODE) in
# CMakeLists.txt with PYTHON, CORE (the built module) and WORK (a scratch folder) set.
#
# The module is imported from WORK/pymbrl, a regular package holding only a copy of it: an installed
# pymbrl elsewhere on the path would otherwise be found first and its older module described.
# A failure stops the build: a wheel is only built where its module can be imported, so a failure
# means a broken module or a missing build dependency, and a wheel without stubs must not ship.
file(REMOVE_RECURSE "${WORK}")
file(MAKE_DIRECTORY "${WORK}/pymbrl")
file(COPY "${CORE}" DESTINATION "${WORK}/pymbrl")
file(WRITE "${WORK}/pymbrl/__init__.py" "")
# Prepended, not replacing: pip's build isolation passes the build requirements on PYTHONPATH.
if(DEFINED ENV{PYTHONPATH} AND NOT "$ENV{PYTHONPATH}" STREQUAL "")
  set(path "${WORK}:$ENV{PYTHONPATH}")
else()
  set(path "${WORK}")
endif()
execute_process(
  COMMAND "${CMAKE_COMMAND}" -E env "PYTHONPATH=${path}"
          "${PYTHON}" -m pybind11_stubgen pymbrl._core --exit-code -o "${WORK}/out"
  RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE out)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "pybind11-stubgen could not write the stubs of pymbrl._core (exit ${rc}):\n${out}"
                      "pybind11-stubgen and the modules the stubs name (numpy, typing-extensions) are build "
                      "requirements; or configure with -DPYMBRL_STUBS=OFF.")
endif()
file(INSTALL "${WORK}/out/pymbrl/_core" DESTINATION "${CMAKE_INSTALL_PREFIX}/pymbrl" FILES_MATCHING PATTERN "*.pyi")
