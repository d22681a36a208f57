# A stand-in for Slicer's CMake package, for Testing/test_extension_packaging.py only.
#
# It defines what the extension's CMakeLists use, with the same arguments as Slicer 5.8, and lays
# out the build and install trees the same way (scripts and resources under
# ${Slicer_QTSCRIPTEDMODULES_LIB_DIR}), so the test can configure, build and install the extension
# without Slicer and check which files land where. Python files are copied, not compiled.

set(Slicer_QTSCRIPTEDMODULES_LIB_DIR "lib/Slicer-5.8/qt-scripted-modules")
set(Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR "${Slicer_QTSCRIPTEDMODULES_LIB_DIR}")
set(Slicer_USE_FILE "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(Slicer_EXTENSION_GENERATE_CONFIG "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(Slicer_EXTENSION_CPACK "${CMAKE_CURRENT_LIST_DIR}/empty.cmake")
set(BUILD_TESTING ON)

macro(slicerMacroBuildScriptedModule)
  cmake_parse_arguments(MY_SLICER "WITH_GENERIC_TESTS;WITH_SUBDIR;VERBOSE" "NAME" "SCRIPTS;RESOURCES" ${ARGN})
  if(MY_SLICER_UNPARSED_ARGUMENTS)
    message(FATAL_ERROR "Unknown keywords given to slicerMacroBuildScriptedModule(): \"${MY_SLICER_UNPARSED_ARGUMENTS}\"")
  endif()
  set(_outputs)
  foreach(_file IN LISTS MY_SLICER_SCRIPTS MY_SLICER_RESOURCES)
    if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${_file})
      message(FATAL_ERROR "slicerMacroBuildScriptedModule given nonexistent file '${_file}'")
    endif()
    set(_output ${CMAKE_BINARY_DIR}/${Slicer_QTSCRIPTEDMODULES_LIB_DIR}/${_file})
    add_custom_command(OUTPUT ${_output}
      COMMAND ${CMAKE_COMMAND} -E copy_if_different ${CMAKE_CURRENT_SOURCE_DIR}/${_file} ${_output}
      DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/${_file})
    list(APPEND _outputs ${_output})
    get_filename_component(_subdir ${_file} DIRECTORY)
    install(FILES ${CMAKE_CURRENT_SOURCE_DIR}/${_file}
      DESTINATION ${Slicer_INSTALL_QTSCRIPTEDMODULES_LIB_DIR}/${_subdir} COMPONENT RuntimeLibraries)
  endforeach()
  add_custom_target(${MY_SLICER_NAME} ALL DEPENDS ${_outputs})
  set_property(GLOBAL APPEND PROPERTY FAKE_SLICER_MODULES ${MY_SLICER_NAME})
endmacro()

function(slicer_add_python_unittest)
  cmake_parse_arguments(MY "" "SCRIPT;TESTNAME_PREFIX" "SLICER_ARGS" ${ARGN})
  if(NOT EXISTS ${CMAKE_CURRENT_SOURCE_DIR}/${MY_SCRIPT})
    message(FATAL_ERROR "slicer_add_python_unittest given nonexistent script '${MY_SCRIPT}'")
  endif()
  file(APPEND ${CMAKE_BINARY_DIR}/python-unittests.txt "${MY_SCRIPT}\n")
endfunction()
